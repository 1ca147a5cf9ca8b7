"""Starts `whale serve` on a free port for tests and benchmarks, and makes small chat models."""
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_chat_model(whale, out_dir, layers=None, hidden=None, seed=1, base="v3"):
    """A random-weight model in the layout of tests/golden/BASE (DeepSeek-V3, or "v32" for
    DeepSeek-V3.2) with the real DeepSeek-V3 tokenizer."""
    cfg = json.load(open(os.path.join(ROOT, "tests/golden", base, "config.json")))
    cfg["vocab_size"] = 129280
    if layers:
        cfg["num_hidden_layers"] = layers
    if hidden:
        cfg["hidden_size"] = hidden
    os.makedirs(out_dir, exist_ok=True)
    cfg_path = os.path.join(out_dir, "init-config.json")
    json.dump(cfg, open(cfg_path, "w"))
    subprocess.run([whale, "init", "--config", cfg_path, "--out", out_dir, "--seed", str(seed)],
                   check=True, stdout=subprocess.DEVNULL)
    tok = os.path.join(ROOT, "..", "shared", "tokenizers", "deepseek-v3")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok, f), os.path.join(out_dir, f))
    return out_dir


class WhaleServer:
    """`with WhaleServer(whale, model, "--parallel", "4") as s: s.url ...`"""

    def __init__(self, whale, model, *args, wait_ready=True):
        self.cmd = [whale, "serve", model, "--port", "0", *args]
        self.wait_ready = wait_ready

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"listening on (http://[^,]+),", line)
        if not m:
            self.proc.kill()
            raise RuntimeError("whale serve did not start: " + line + self.proc.stderr.read())
        self.url = m.group(1)
        self.log = []
        import threading

        def drain():
            for l in self.proc.stderr:
                self.log.append(l)
        self.drainer = threading.Thread(target=drain, daemon=True)
        self.drainer.start()
        if self.wait_ready:
            self.wait_healthy()
        return self

    def wait_healthy(self, seconds=60):
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health") as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("whale serve exited: " + "".join(self.log))
            time.sleep(0.05)
        raise RuntimeError("whale serve not healthy in time")

    def rss_kib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def metrics(self):
        text = urllib.request.urlopen(self.url + "/metrics").read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def metric(self, name):
        for k, v in self.metrics().items():
            if k.startswith(name + "{") or k == name:
                return v
        raise KeyError(name)

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError("whale serve did not stop on SIGTERM")
        return False
