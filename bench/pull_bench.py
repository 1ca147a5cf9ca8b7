#!/usr/bin/env python3
"""`whale pull` throughput against a local mimic of the Hub (tests/hub/hub_mimic.py), beside
curl fetching the same file once over one connection (no verification) as the reference.

Usage: python3 bench/pull_bench.py build/whale [SIZE_MIB=1024] [ROUNDS=3]
Prints, per configuration, the median wall time and MiB/s of a complete pull (download, fsync
of every chunk, SHA-256 of the file, rename) into a fresh store on this machine's disk.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "hub"))
from hub_mimic import Mimic, Repo  # noqa: E402


def main():
    whale = os.path.abspath(sys.argv[1])
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    data = os.urandom(size << 20)
    hub = Mimic()
    hub.add(Repo("bench/model", {"config.json": open(os.path.join(ROOT, "models/whale-r2-tiny/config.json"), "rb").read(),
                                 "model.safetensors": data}))
    repo = hub.repos["bench/model"]
    url = "%s/bench/model/resolve/%s/model.safetensors" % (hub.url, repo.commit)
    rows = []

    def timed(cmd, env=None):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t

    configs = [("curl, 1 connection (no verification)", None)] + [
        ("whale pull, %d connection%s" % (n, "s" if n > 1 else ""), n) for n in (1, 4, 8)]
    for name, n in configs:
        times = []
        for _ in range(rounds):
            tmp = tempfile.mkdtemp(prefix="whale-pull-bench-", dir=os.environ.get("BENCH_DIR"))
            try:
                if n is None:
                    times.append(timed(["curl", "-sfL", "-o", os.path.join(tmp, "f"), url]))
                else:
                    env = dict(os.environ, HF_ENDPOINT=hub.url, WHALE_MODELS=tmp, HF_TOKEN="")
                    times.append(timed([whale, "pull", "bench/model", "--connections", str(n)], env))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        med = statistics.median(times)
        rows.append((name, med, size / med))
    hub.close()
    print("| %d MiB file | median s | MiB/s |\n|---|---|---|" % size)
    for name, med, rate in rows:
        print("| %s | %.2f | %.0f |" % (name, med, rate))


if __name__ == "__main__":
    main()
