"""`whale pull`, the model store and Ollama's /api/pull, against a local Hub mimic (hub_mimic.py).

Covers: safetensors and GGUF (single, split sets, by tag) pulls with only the needed files,
resume after a dropped connection and after kill -9, SHA-256 / git checks, 404, 401 for a gated
repository (and HF_TOKEN), a full disk (free-space check and a write that fails), concurrent
pulls, catalogue names, list / show / rm, store names in `generate` and `serve`, and the
official `ollama` client's pull / list / delete.

Usage: python3 tests/hub/test_pull.py WHALE_BINARY   (ctest runs it)
"""
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "server"))
from hub_mimic import Mimic, Repo  # noqa: E402

WHALE = None
TINY = os.path.join(ROOT, "models", "whale-r2-tiny")
GOLDEN = os.path.join(ROOT, "tests", "golden", "llamacpp")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def tiny_files():
    files = {p: read(os.path.join(TINY, p)) for p in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")}
    files["README.md"] = b"# not needed\n"
    files["inference/model.py"] = b"print('not needed')\n"
    files["figures/plot.png"] = b"\x89PNG not needed"
    return files


class PullTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hub = Mimic()
        cls.hub.add(Repo("deepseek-ai/whale-tiny", tiny_files()))
        q8 = read(os.path.join(GOLDEN, "v3-q8_0.gguf"))
        cls.q8 = q8
        cls.hub.add(Repo("user/tiny-GGUF", {
            "tiny-Q8_0.gguf": q8,
            "tiny-BF16.gguf": read(os.path.join(GOLDEN, "v3-bf16.gguf")),
            # a split set made by llama-gguf-split (of the Q8_0 file; the tag is only a name here)
            "Q4_K_M/tiny-Q4_K_M-00001-of-00002.gguf": read(os.path.join(GOLDEN, "v3-q8_0-split-00001-of-00002.gguf")),
            "Q4_K_M/tiny-Q4_K_M-00002-of-00002.gguf": read(os.path.join(GOLDEN, "v3-q8_0-split-00002-of-00002.gguf")),
            "tiny-IQ4_K_M.gguf": b"not this one",
            "mmproj-tiny-F16.gguf": b"projector",
            "README.md": b"# GGUF\n",
        }))
        cls.hub.add(Repo("gated/tiny", {"config.json": read(os.path.join(TINY, "config.json")),
                                        "model.safetensors": b"\0" * 5000}, gated=True))
        cls.hub.add(Repo("private/tiny", {"config.json": read(os.path.join(TINY, "config.json")),
                                           "model.safetensors": b"\0" * 5000}, gated="private"))
        bad = cls.hub.add(Repo("bad/checksum", {"config.json": b"{}", "model.safetensors": b"x" * 300000}))
        bad.lie_sha["model.safetensors"] = "0" * 64
        huge = cls.hub.add(Repo("huge/model", {"config.json": b"{}", "model.safetensors": b"y" * 1000}))
        huge.lie_size["model.safetensors"] = 1 << 52

    @classmethod
    def tearDownClass(cls):
        cls.hub.close()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="whale-pull-")
        self.store = os.path.join(self.tmp, "store")
        self.env = dict(os.environ, HF_ENDPOINT=self.hub.url, WHALE_MODELS=self.store, HF_TOKEN="",
                        HF_HOME=os.path.join(self.tmp, "hf"))
        self.env.pop("WHALE_CATALOG", None)
        self.hub.throttle = 0
        self.hub.drop_once.clear()
        with self.hub.lock:
            self.hub.log.clear()

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def whale(self, *args, ok=True, timeout=300, env=None, preexec=None):
        p = subprocess.run([WHALE, *args], capture_output=True, text=True, timeout=timeout, env=env or self.env,
                           preexec_fn=preexec)
        if ok and p.returncode != 0:
            self.fail("whale %s failed (%d): %s" % (" ".join(args), p.returncode, p.stderr))
        if not ok:
            self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertNotIn("Traceback", p.stderr)
            self.assertLess(p.returncode, 128, "crashed: " + p.stderr)  # an error, not a signal
        return p

    def models_dir(self, key):
        return os.path.join(self.store, "models", key)

    def assert_no_model(self, key):
        self.assertFalse(os.path.exists(self.models_dir(key)), "a half model is visible: " + key)

    # --- pulls that work ---
    def test_safetensors_only_needed_files_verified(self):
        p = self.whale("pull", "deepseek-ai/whale-tiny", "--chunk-size", "1M", "--connections", "4")
        d = self.models_dir("deepseek-ai--whale-tiny")
        self.assertEqual(sorted(f for f in os.listdir(d) if f != "whale-manifest.json"),
                         ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])
        for f in os.listdir(d):
            if f != "whale-manifest.json":
                self.assertEqual(read(os.path.join(d, f)), read(os.path.join(TINY, f)), f)
        self.assertIn("pull: 100%", p.stderr)  # plain progress lines when not a terminal
        # The token goes to the Hub, never to the CDN host a redirect names.
        content = self.hub.requests("content")
        self.assertGreater(len([e for e in content if e[1] == "model.safetensors"]), 10)  # ranged, in 1 MiB chunks
        # Store names work where paths do, with the same output.
        gen = ["generate", "--tokens", "1,2,3", "--max-tokens", "8"]
        by_name = self.whale(*gen, "--model", "deepseek-ai/whale-tiny").stdout
        by_path = self.whale(*gen, "--model", TINY).stdout
        self.assertEqual(by_name, by_path)
        lst = self.whale("list").stdout
        self.assertIn("deepseek-ai/whale-tiny", lst)
        self.assertIn("safetensors", lst)
        self.assertNotIn("never", lst)  # generate touched it
        show = self.whale("show", "deepseek-ai/whale-tiny").stdout
        self.assertIn("architecture", show)
        self.assertIn("KV cache", show)
        self.assertIn("fits", show)
        # A second pull of the same commit downloads nothing.
        n = len(self.hub.requests("content"))
        self.assertIn("up to date", self.whale("pull", "deepseek-ai/whale-tiny").stderr)
        self.assertEqual(len(self.hub.requests("content")), n)
        # rm
        self.assertIn("deleted", self.whale("rm", "deepseek-ai/whale-tiny").stdout)
        self.assert_no_model("deepseek-ai--whale-tiny")
        self.assertIn("no models", self.whale("list").stdout)
        self.assertIn("no model 'deepseek-ai/whale-tiny'", self.whale("rm", "deepseek-ai/whale-tiny", ok=False).stderr)
        err = self.whale(*gen, "--model", "deepseek-ai/whale-tiny", ok=False).stderr
        self.assertIn("whale pull deepseek-ai/whale-tiny", err)

    def test_new_commit_fetches_only_what_changed(self):
        self.whale("pull", "deepseek-ai/whale-tiny")
        repo = self.hub.repos["deepseek-ai/whale-tiny"]
        old = dict(repo.files)
        try:
            repo.files["config.json"] = \
                json.dumps(dict(json.loads(repo.files["config.json"]), whale_note=1)).encode()
            repo.commit = "f" * 40
            with self.hub.lock:
                self.hub.log.clear()
            self.whale("pull", "deepseek-ai/whale-tiny")
            fetched = {e[1] for e in self.hub.requests("content")}
            self.assertEqual(fetched, {"config.json"})  # the weights were reused, not downloaded again
            d = self.models_dir("deepseek-ai--whale-tiny")
            self.assertEqual(read(os.path.join(d, "config.json")), repo.files["config.json"])
            self.assertEqual(json.load(open(os.path.join(d, "whale-manifest.json")))["commit"], "f" * 40)
            self.whale("generate", "--model", "deepseek-ai/whale-tiny", "--tokens", "1", "--max-tokens", "2")
        finally:
            repo.files = old
            repo.commit = Repo("x/y", old).commit

    def test_progress_bar_on_a_terminal(self):
        import pty
        self.hub.throttle = 8 << 20  # about two seconds: several redraws
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(WHALE, [WHALE, "pull", "deepseek-ai/whale-tiny"], self.env)
        out = b""
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, out)
        text = out.decode(errors="replace")
        self.assertIn("\r", text)  # redrawn in place
        self.assertIn("[##############################]", text)
        self.assertIn("ETA", text)
        self.assertIn("/s", text)

    def test_interrupted_pull_of_an_older_commit_is_not_trusted(self):
        # A pull dies after config.json was finished; the repository then changes config.json
        # (same size) in a new commit: the next pull fetches it again rather than keep the old one.
        env = dict(self.env, WHALE_FAULT="pull_chunk:2")
        p = subprocess.run([WHALE, "pull", "deepseek-ai/whale-tiny", "--chunk-size", "1M", "--connections", "1"],
                           env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 137, p.stderr)
        staged = os.path.join(self.store, "partial", "deepseek-ai--whale-tiny", "config.json")
        self.assertTrue(os.path.exists(staged))
        repo = self.hub.repos["deepseek-ai/whale-tiny"]
        old = dict(repo.files)
        try:
            text = repo.files["config.json"]
            i = text.index(b"1")
            repo.files["config.json"] = text[:i] + b"2" + text[i + 1:]  # same size, other content
            repo.commit = "e" * 40
            self.whale("pull", "deepseek-ai/whale-tiny")
            got = read(os.path.join(self.models_dir("deepseek-ai--whale-tiny"), "config.json"))
            self.assertEqual(got, repo.files["config.json"])
            self.assertFalse(os.path.exists(os.path.join(self.models_dir("deepseek-ai--whale-tiny"), ".whale-pull-commit")))
        finally:
            repo.files = old
            repo.commit = Repo("x/y", old).commit

    def test_token_not_sent_to_cdn(self):
        env = dict(self.env, HF_TOKEN="hf_secret")
        self.whale("pull", "deepseek-ai/whale-tiny", env=env)
        api = self.hub.requests("api")
        self.assertTrue(api and all(e[3] for e in api), api)
        cdn = [e for e in self.hub.requests("content") if e[1] == "model.safetensors"]
        self.assertTrue(cdn and not any(e[3] for e in cdn), "the token went to the CDN host")

    def test_gguf_by_tag_split_sets_and_projector(self):
        self.whale("pull", "user/tiny-GGUF:q8_0")
        d = self.models_dir("user--tiny-GGUF--Q8_0")
        self.assertEqual(sorted(os.listdir(d)), ["mmproj-tiny-F16.gguf", "tiny-Q8_0.gguf", "whale-manifest.json"])
        gen = ["generate", "--tokens", "1,2,3", "--max-tokens", "6"]
        self.assertEqual(self.whale(*gen, "--model", "user/tiny-GGUF:Q8_0").stdout,
                         self.whale(*gen, "--model", os.path.join(GOLDEN, "v3-q8_0.gguf")).stdout)
        # No tag: llama.cpp's default Q4_K_M, a split set in a folder (not IQ4_K_M).
        self.whale("pull", "user/tiny-GGUF")
        d = self.models_dir("user--tiny-GGUF--Q4_K_M")
        self.assertEqual(sorted(os.listdir(os.path.join(d, "Q4_K_M"))),
                         ["tiny-Q4_K_M-00001-of-00002.gguf", "tiny-Q4_K_M-00002-of-00002.gguf"])
        self.assertEqual(self.whale(*gen, "--model", "user/tiny-GGUF").stdout,  # the split set loads as one model
                         self.whale(*gen, "--model", os.path.join(GOLDEN, "v3-q8_0.gguf")).stdout)
        lst = self.whale("list").stdout
        self.assertIn("user/tiny-GGUF:Q4_K_M", lst)
        self.assertIn("gguf", lst)
        err = self.whale("pull", "user/tiny-GGUF:Q2_K", ok=False).stderr
        self.assertIn("no GGUF file matches 'Q2_K'", err)
        self.assertIn("tiny-Q8_0.gguf", err)

    def test_catalogue_names(self):
        os.makedirs(self.store, exist_ok=True)
        with open(os.path.join(self.store, "catalog.json"), "w") as f:
            json.dump({"tiny": {"repo": "deepseek-ai/whale-tiny", "gguf": "user/tiny-GGUF", "about": "test"}}, f)
        self.whale("pull", "tiny:q8_0")
        self.assertIn("tiny:q8_0", self.whale("list").stdout)
        self.whale("generate", "--model", "tiny:q8_0", "--tokens", "1", "--max-tokens", "2")
        # The built-in names are there too, and unknown names say what is known.
        err = self.whale("pull", "no-such-model", ok=False).stderr
        self.assertIn("deepseek-v4-flash", err)
        with open(os.path.join(self.store, "catalog.json"), "w") as f:
            f.write('{"tiny": {"repo": 7}}')
        err = self.whale("pull", "tiny", ok=False).stderr
        self.assertIn("catalog.json: entry 'tiny'", err)

    # --- failures ---
    def test_dropped_connection_resumes_inside_the_chunk(self):
        self.hub.drop_once["model.safetensors"] = 700000
        self.whale("pull", "deepseek-ai/whale-tiny", "--chunk-size", "4M", "--connections", "1")
        starts = [e[2] for e in self.hub.requests("content") if e[1] == "model.safetensors"]
        self.assertIn(700000, starts, starts)  # the retry asked for the rest, not the chunk again
        self.assertEqual(read(os.path.join(self.models_dir("deepseek-ai--whale-tiny"), "model.safetensors")),
                         read(os.path.join(TINY, "model.safetensors")))

    def test_checksum_mismatch(self):
        err = self.whale("pull", "bad/checksum", ok=False).stderr
        self.assertIn("checksum mismatch", err)
        self.assertIn("model.safetensors", err)
        self.assert_no_model("bad--checksum")
        partial = os.path.join(self.store, "partial", "bad--checksum")
        self.assertFalse([f for f in os.listdir(partial) if f.startswith("model.safetensors")], "the damaged file was kept")

    def test_not_found_and_gated(self):
        err = self.whale("pull", "nobody/nothing", ok=False).stderr
        self.assertIn("no repository nobody/nothing", err)
        err = self.whale("pull", "gated/tiny", ok=False).stderr
        self.assertIn("gated", err)
        self.assertIn("HF_TOKEN", err)
        self.assert_no_model("gated--tiny")
        err = self.whale("pull", "gated/tiny", ok=False, env=dict(self.env, HF_TOKEN="wrong")).stderr
        self.assertIn("gated", err)
        self.assertIn("with the account of your HF_TOKEN", err)
        err = self.whale("pull", "private/tiny", ok=False).stderr  # private: the Hub says not found
        self.assertIn("no repository private/tiny", err)
        self.assertIn("set HF_TOKEN", err)
        self.whale("pull", "private/tiny", env=dict(self.env, HF_TOKEN="hf_secret"))
        # The token file `huggingface-cli login` writes is read too.
        os.makedirs(self.env["HF_HOME"])
        with open(os.path.join(self.env["HF_HOME"], "token"), "w") as f:
            f.write("hf_secret\n")
        self.whale("pull", "gated/tiny")
        err = self.whale("pull", "deepseek-ai/whale-tiny", "--revision", "v9", ok=False).stderr
        self.assertIn("no revision 'v9'", err)

    def test_full_disk(self):
        err = self.whale("pull", "huge/model", ok=False).stderr
        self.assertIn("not enough disk space", err)
        self.assert_no_model("huge--model")
        # A write that fails mid-pull (a 2 MB file-size limit stands in for a full disk).
        limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))  # noqa: E731
        err = self.whale("pull", "deepseek-ai/whale-tiny", ok=False, preexec=limit).stderr
        self.assertIn("model.safetensors", err)
        self.assertIn("File too large", err)
        self.assert_no_model("deepseek-ai--whale-tiny")
        self.whale("pull", "deepseek-ai/whale-tiny")  # without the limit it completes

    def test_a_really_full_disk(self):
        # A small tmpfs as the store (when this test may mount one: root in a container that allows it).
        mnt = os.path.join(self.tmp, "small")
        os.makedirs(mnt)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt], capture_output=True).returncode != 0:
            self.skipTest("cannot mount a tmpfs here (needs root); the free-space and write-failure paths are tested above")
        try:
            env = dict(self.env, WHALE_MODELS=os.path.join(mnt, "store"))
            err = self.whale("pull", "deepseek-ai/whale-tiny", ok=False, env=env).stderr
            self.assertIn("not enough disk space", err)
            self.assertFalse(os.path.exists(os.path.join(mnt, "store", "models", "deepseek-ai--whale-tiny")))
            self.whale("pull", "user/tiny-GGUF:Q8_0", env=env)  # a model that fits still does
        finally:
            subprocess.run(["umount", mnt], capture_output=True)

    def test_kill_9_resumes(self):
        self.hub.throttle = 3 << 20
        cmd = [WHALE, "pull", "deepseek-ai/whale-tiny", "--chunk-size", "512K", "--connections", "2"]
        proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log = os.path.join(self.store, "partial", "deepseek-ai--whale-tiny", "model.safetensors.part.log")
        deadline = time.time() + 60
        while time.time() < deadline:
            if os.path.exists(log) and len(read(log).splitlines()) >= 6:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = len(read(log).splitlines()) - 1
        self.assertGreaterEqual(done, 5)
        self.assert_no_model("deepseek-ai--whale-tiny")
        # A second pull while... no: first, a concurrent pull of the same model is refused.
        self.hub.throttle = 1 << 20
        slow = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        err = self.whale("pull", "deepseek-ai/whale-tiny", ok=False).stderr
        self.assertIn("another `whale pull`", err)
        slow.send_signal(signal.SIGKILL)
        slow.wait()
        self.hub.throttle = 0
        with self.hub.lock:
            self.hub.log.clear()
        p = self.whale("pull", "deepseek-ai/whale-tiny", "--chunk-size", "512K")
        self.assertIn("resuming", p.stderr)
        starts = [e[2] for e in self.hub.requests("content") if e[1] == "model.safetensors"]
        self.assertNotIn(0, starts)  # the first chunks were not fetched again
        size = os.path.getsize(os.path.join(TINY, "model.safetensors"))
        self.assertLessEqual(len(starts), (size - done * 524288) // 524288 + 1)
        self.assertEqual(read(os.path.join(self.models_dir("deepseek-ai--whale-tiny"), "model.safetensors")),
                         read(os.path.join(TINY, "model.safetensors")))

    def test_changing_chunk_size_restarts_cleanly(self):
        self.hub.throttle = 2 << 20
        proc = subprocess.Popen([WHALE, "pull", "deepseek-ai/whale-tiny", "--chunk-size", "256K"], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.hub.throttle = 0
        self.whale("pull", "deepseek-ai/whale-tiny", "--chunk-size", "1M")
        self.assertEqual(read(os.path.join(self.models_dir("deepseek-ai--whale-tiny"), "model.safetensors")),
                         read(os.path.join(TINY, "model.safetensors")))

    # --- the Ollama API over the same store ---
    def test_ollama_pull_list_delete(self):
        import ollama
        from whale_server import WhaleServer
        old = dict(os.environ)
        os.environ.update(HF_ENDPOINT=self.hub.url, WHALE_MODELS=self.store, HF_TOKEN="")
        try:
            with WhaleServer(WHALE, "default") as s:
                client = ollama.Client(host=s.url)
                events = list(client.pull("user/tiny-GGUF:Q8_0", stream=True))
                statuses = [e.status for e in events]
                self.assertEqual(statuses[0], "pulling manifest")
                self.assertEqual(statuses[-1], "success")
                self.assertIn("verifying sha256 digest", statuses)
                q8_digest = "sha256:" + hashlib.sha256(self.q8).hexdigest()
                last = [e for e in events if e.digest == q8_digest][-1]
                self.assertEqual((last.total, last.completed), (len(self.q8), len(self.q8)))
                names = [m.model for m in client.list().models]
                self.assertIn("user/tiny-GGUF:Q8_0", names)
                self.assertEqual(client.pull("user/tiny-GGUF:Q8_0").status, "success")  # not streamed
                shown = client.show("user/tiny-GGUF:Q8_0")  # a stored model that is not the one served
                self.assertEqual(shown.details.format, "gguf")
                self.assertEqual(shown.details.quantization_level, "Q8_0")
                self.assertGreater(shown.modelinfo["deepseek2.block_count"], 0)
                with self.assertRaises(ollama.ResponseError):
                    client.show("user/not-pulled")
                with self.assertRaises(ollama.ResponseError) as e:
                    list(client.pull("nobody/nothing", stream=True))
                self.assertIn("no repository", str(e.exception))
                self.assertEqual(client.delete("user/tiny-GGUF:Q8_0").status, "success")
                self.assertNotIn("user/tiny-GGUF:Q8_0", [m.model for m in client.list().models])
                with self.assertRaises(ollama.ResponseError) as e:
                    client.delete("user/tiny-GGUF:Q8_0")
                self.assertEqual(e.exception.status_code, 404)
            # A store name served: clients call the model by that name.
            self.whale("pull", "deepseek-ai/whale-tiny")
            with WhaleServer(WHALE, "deepseek-ai/whale-tiny") as s:
                client = ollama.Client(host=s.url)
                r = client.generate(model="deepseek-ai/whale-tiny", prompt="1+1=", options={"num_predict": 3}, think=False)
                self.assertTrue(r.done)
        finally:
            os.environ.clear()
            os.environ.update(old)


if __name__ == "__main__":
    WHALE = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
