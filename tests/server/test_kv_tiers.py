"""The KV cache's RAM and disk tiers through `whale serve` and `whale run`.

A restarted server answers repeated prompts from disk with exactly the cold answers; kill -9
at random moments of heavy writing (and at the disk tier's fault points) never leaves a block
that is served wrong; damaged files are refused and counted; two servers share a directory;
usage and /metrics report the tiers; `whale run` sessions save, list, load and drop.

Usage: python3 tests/server/test_kv_tiers.py WHALE_BINARY   (ctest runs it)
"""
import concurrent.futures
import json
import os
import pty
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from whale_server import WhaleServer  # noqa: E402

WHALE = None
SANITIZED = bool(os.environ.get("WHALE_SANITIZED"))
WORDS = ("whale ocean deep current salt krill song pod dive surface tide moon reef coral shell wave "
         "north south east west storm calm fish net boat harbor light dark blue green one two three").split()


def make_prompts(n, seed, words=(180, 420)):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(*words))) for _ in range(n)]


def complete(server, prompt, timeout=120):
    body = {"model": "default", "prompt": prompt, "max_tokens": 6, "temperature": 0, "logprobs": 2}
    req = urllib.request.Request(server.url + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        j = json.loads(r.read())
    ch = j["choices"][0]
    return (ch["text"], ch["logprobs"]["token_logprobs"], ch["logprobs"]["top_logprobs"]), j["usage"]


def metric(server, name, tier=None):
    total = 0.0
    for line in urllib.request.urlopen(server.url + "/metrics").read().decode().splitlines():
        if line.startswith(name + "{") and (tier is None or f'tier="{tier}"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def block_files(d):
    out = []
    for root, _, files in os.walk(os.path.join(d, "blocks")):
        out += [os.path.join(root, f) for f in files]
    return sorted(out)


class Tiers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="whale-kv-")
        # Under the sanitizers the server runs several times slower: fewer, shorter prompts.
        cls.prompts = make_prompts(6, seed=7, words=(50, 90)) if SANITIZED else make_prompts(24, seed=7)
        with WhaleServer(WHALE, "default", "--parallel", "4") as s:  # the cold answers
            with concurrent.futures.ThreadPoolExecutor(4) as ex:
                cls.ref = list(ex.map(lambda p: complete(s, p)[0], cls.prompts))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def dir(self, name):
        d = os.path.join(self.tmp, name)
        shutil.rmtree(d, ignore_errors=True)
        return d

    def check_all(self, server, prompts=None):
        """Every prompt answered exactly as cold; returns the tokens served from disk."""
        disk = 0
        for i, p in enumerate(prompts if prompts is not None else self.prompts):
            got, usage = complete(server, p)
            self.assertEqual(got, self.ref[self.prompts.index(p)], f"prompt {i}")
            disk += usage["prompt_cache_hit_tokens_by_tier"]["disk"]
        return disk

    def test_restart_answers_from_disk(self):
        d = self.dir("restart")
        some = self.prompts[:3] if SANITIZED else self.prompts[:6]
        with WhaleServer(WHALE, "default", "--kv-disk", d, "--kv-ram", "64M") as s:
            self.check_all(s, some)
            _, usage = complete(s, some[0])
            self.assertGreater(usage["prompt_cache_hit_tokens_by_tier"]["pool"], 0)
        self.assertGreater(len(block_files(d)), 0)
        with WhaleServer(WHALE, "default", "--kv-disk", d) as s:
            disk = self.check_all(s, some)
            self.assertGreater(disk, 0)
            _, usage = complete(s, some[1])  # now in the pool
            self.assertEqual(usage["prompt_cache_hit_tokens"], usage["prompt_cache_hit_tokens_by_tier"]["pool"])
            self.assertGreater(metric(s, "whale:kv_tier_hit_tokens_total", "disk"), 0)
            self.assertGreater(metric(s, "whale:kv_tier_block_hits_total", "disk"), 0)
            self.assertGreater(metric(s, "whale:kv_disk_load_seconds_count"), 0)
            self.assertEqual(metric(s, "whale:kv_disk_corrupt_blocks_total"), 0)
            self.assertGreater(metric(s, "whale:kv_tier_bytes", "disk"), 0)

    def test_kill_9_while_writing_never_serves_a_bad_block(self):
        d = self.dir("kill")
        rng = random.Random(1234)
        rounds = 2 if SANITIZED else 6
        for r in range(rounds):
            batch = rng.sample(self.prompts, 4 if SANITIZED else 8)
            s = WhaleServer(WHALE, "default", "--kv-disk", d, "--parallel", "4").__enter__()
            ex = concurrent.futures.ThreadPoolExecutor(8)
            for p in batch:
                ex.submit(complete, s, p)
            time.sleep(rng.uniform(0.05, 1.2 if not SANITIZED else 3.0))
            s.proc.send_signal(signal.SIGKILL)
            s.proc.wait()
            ex.shutdown(wait=True, cancel_futures=True)
        # Kills at the disk tier's own steps: after the data is written but before it is
        # synced, and after the sync but before the rename.
        for k, fault in enumerate(("kv_disk.before_sync:5", "kv_disk.before_rename:9")):
            env = dict(os.environ, WHALE_FAULT=fault)
            fresh = make_prompts(4, seed=100 + k, words=(50, 90) if SANITIZED else (180, 420))  # new blocks to write
            proc = subprocess.Popen([WHALE, "serve", "default", "--port", "0", "--kv-disk", d],
                                    stderr=subprocess.PIPE, text=True, env=env)
            m = re.search(r"listening on (http://[^,]+),", proc.stderr.readline())
            self.assertTrue(m)
            url = m.group(1)
            s = WhaleServer.__new__(WhaleServer)
            s.url, s.proc, s.log = url, proc, []
            s.wait_healthy()
            try:
                with concurrent.futures.ThreadPoolExecutor(4) as ex:
                    futures = [ex.submit(complete, s, p) for p in fresh]
                    proc.wait(timeout=120)
                    for f in futures:
                        try:
                            f.result(timeout=5)
                        except Exception:
                            pass
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            self.assertEqual(proc.returncode, 137, fault)
            proc.stderr.close()
        tmp = os.path.join(d, "tmp")
        self.assertTrue(os.listdir(tmp), "the faults left temporary files behind")
        with WhaleServer(WHALE, "default", "--kv-disk", d) as s:
            self.assertEqual(os.listdir(tmp), [], "stale temporary files swept at start")
            disk = self.check_all(s)
            self.assertGreater(disk, 0)
            self.assertEqual(metric(s, "whale:kv_disk_corrupt_blocks_total"), 0)
        for f in block_files(d):  # every file under a block's name is complete
            self.assertGreater(os.path.getsize(f), 64)

    def test_damaged_files_are_refused_and_counted(self):
        d = self.dir("damage")
        some = self.prompts[:3] if SANITIZED else self.prompts[:5]
        with WhaleServer(WHALE, "default", "--kv-disk", d) as s:
            self.check_all(s, some)
        files = block_files(d)
        self.assertGreater(len(files), 10)
        damaged = files[::8] if SANITIZED else files[::4]
        for i, f in enumerate(damaged):
            data = bytearray(open(f, "rb").read())
            if i % 3 == 0:
                data[len(data) // 2] ^= 0x01
            elif i % 3 == 1:
                data = data[: len(data) - 100]
            else:
                data = bytearray(open(files[(files.index(f) + 1) % len(files)], "rb").read())
            open(f, "wb").write(data)
        # A prompt's blocks load in order up to the first bad one, which is deleted and, with
        # the rest, recomputed (and written again); the next restart reaches the next bad one.
        seen = []
        for _ in range(len(damaged) + 1):
            with WhaleServer(WHALE, "default", "--kv-disk", d) as s:
                self.check_all(s, some)
                seen.append(metric(s, "whale:kv_disk_corrupt_blocks_total"))
            if seen[-1] == 0:
                break
        self.assertGreater(seen[0], 0)
        self.assertEqual(seen[-1], 0, seen)
        self.assertLessEqual(sum(seen), len(damaged))

    def test_two_servers_share_a_directory(self):
        d = self.dir("shared")
        with WhaleServer(WHALE, "default", "--kv-disk", d) as a, WhaleServer(WHALE, "default", "--kv-disk", d) as b:
            p = self.prompts[3]
            got, _ = complete(a, p)
            self.assertEqual(got, self.ref[3])
            deadline = time.time() + 30
            while metric(a, "whale:kv_tier_written_bytes_total", "disk") == 0 and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # the last blocks of the prompt reach the disk
            got, usage = complete(b, p)
            self.assertEqual(got, self.ref[3])
            self.assertGreater(usage["prompt_cache_hit_tokens_by_tier"]["disk"], 0)

    def test_price_and_ollama_fields(self):
        with WhaleServer(WHALE, "default", "--kv-ram", "32M", "--price", "0.07,0.27,1.10") as s:
            p = self.prompts[0]
            _, u1 = complete(s, p)
            self.assertAlmostEqual(u1["cost"]["prompt_cache_miss"], u1["prompt_cache_miss_tokens"] * 0.27e-6)
            self.assertAlmostEqual(u1["cost"]["total"], sum(u1["cost"][k] for k in ("prompt_cache_hit", "prompt_cache_miss", "output")))
            body = {"model": "default", "prompt": p, "raw": True, "stream": False, "options": {"temperature": 0, "num_predict": 4}}
            for _ in range(2):  # the second finds the first's blocks
                req = urllib.request.Request(s.url + "/api/generate", data=json.dumps(body).encode())
                j = json.loads(urllib.request.urlopen(req, timeout=60).read())
            self.assertGreater(j["prompt_cache_hit_tokens"], 0)
            self.assertEqual(j["prompt_cache_hit_tokens"], sum(j["prompt_cache_hit_tokens_by_tier"].values()))
            self.assertIn("cost", j)

    def test_bad_flags_are_named(self):
        for args, culprit in ((["--kv-ram", "lots"], "--kv-ram"), (["--kv-disk-size", "-3G", "--kv-disk", self.tmp], "--kv-disk-size"),
                              (["--kv-disk", "/proc/whale-no"], "/proc/whale-no"), (["--price", "1,2"], "--price")):
            r = subprocess.run([WHALE, "serve", "default", "--port", "0", *args], capture_output=True, text=True, timeout=60)
            self.assertNotEqual(r.returncode, 0, args)
            self.assertIn(culprit, r.stderr, args)
            self.assertNotIn("Sanitizer", r.stderr)


def run_chat(args, lines, timeout=120):
    """Types `lines` into `whale run` on a pseudo-terminal; returns what it printed."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(WHALE, [WHALE, "run", *args], dict(os.environ, TERM="dumb", NO_COLOR="1"))
    out = b""

    def until_prompt():
        nonlocal out
        start = len(out)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    return
                if out[start:].rstrip().endswith(b">>>"):
                    return
        raise AssertionError("whale run did not answer: " + out.decode(errors="replace"))

    until_prompt()
    for line in lines:
        os.write(fd, line.encode() + b"\r")
        until_prompt()
    os.write(fd, b"/bye\r")
    os.waitpid(pid, 0)
    os.close(fd)
    return out.decode(errors="replace")


class RunSessions(unittest.TestCase):
    def test_save_list_load_drop(self):
        tmp = tempfile.mkdtemp(prefix="whale-sessions-")
        try:
            args = ["--temperature", "0", "--max-tokens", "12", "--kv-disk", tmp + "/kv", "--sessions", tmp + "/sessions"]
            question = " ".join(make_prompts(1, seed=3, words=(150, 150))[0].split()[:150])
            out = run_chat(args, [question, "/save trip", "/sessions"])
            self.assertIn("Saved session trip", out)
            m = re.search(r"trip\s+([0-9a-f]{12})\s+2 messages", out)
            self.assertTrue(m, out)
            # A new process: the conversation's blocks come back from disk.
            out = run_chat(args, ["/load " + m.group(1), "and then?"])
            self.assertRegex(out, r"Loaded session trip: 2 messages, \d+ tokens; [1-9]\d* of them in the KV cache, about [\d.]+ s of prefill saved")
            hit = re.search(r"prompt (\d+) tokens, (\d+) cached \(0 from RAM, (\d+) from disk", out)
            self.assertTrue(hit, out)
            self.assertGreater(int(hit.group(3)), 100)
            out = run_chat(args, ["/load nosuch", "/drop trip", "/sessions"])
            self.assertIn("no session 'nosuch'", out)
            self.assertIn("Deleted session trip", out)
            self.assertIn("No saved sessions", out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    WHALE = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
