#!/usr/bin/env python3
"""Tokenizer encode throughput: whale vs Hugging Face `tokenizers`, single thread, same docs.

    pip install tokenizers
    python3 bench/tokenizer_bench.py [--tokenizer DIR] [--whale build/whale]

Inputs are built from files every Debian machine has: English prose from the licence texts
in /usr/share/common-licenses, code from the Python standard library. Each is cut into
~2 KB documents at line boundaries and encoded one document at a time (no batching), five
timed repeats after a warm-up; medians are reported.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
HERE = os.path.dirname(os.path.abspath(__file__))


def documents(text, size=2000):
    docs, cur = [], ""
    for line in text.split("\n"):
        cur += line + "\n"
        if len(cur) > size:
            docs.append(cur)
            cur = ""
    if cur:
        docs.append(cur)
    return docs


def corpora():
    prose = "".join(open(f, encoding="utf-8", errors="replace").read()
                    for f in sorted(glob.glob("/usr/share/common-licenses/*")) if os.path.isfile(f))
    code = "".join(open(f, encoding="utf-8", errors="replace").read()
                   for f in sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))[:150])
    return {"prose": documents(prose * 4), "code": documents(code)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default=os.path.join(HERE, "..", "..", "shared", "tokenizers", "deepseek-v3"))
    ap.add_argument("--whale", default=os.path.join(HERE, "..", "build", "whale"))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from tokenizers import Tokenizer, __version__
    hf = Tokenizer.from_file(os.path.join(args.tokenizer, "tokenizer.json"))
    rows = []
    for name, docs in corpora().items():
        nbytes = sum(len(d.encode()) for d in docs)
        for d in docs[:3]:
            hf.encode(d, add_special_tokens=False)
        times = []
        for _ in range(args.repeats + 1):
            t0 = time.perf_counter()
            n = sum(len(hf.encode(d, add_special_tokens=False).ids) for d in docs)
            times.append(time.perf_counter() - t0)
        hf_med = statistics.median(times[1:])
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            for d in docs:
                f.write(json.dumps(d) + "\n")
        out = subprocess.run([args.whale, "bench", "--tokenizer", args.tokenizer, "--docs", f.name, "-r", str(args.repeats)],
                             check=True, capture_output=True, text=True).stdout
        os.unlink(f.name)
        w = json.loads(out)
        if w["tokens"] != n:
            sys.exit(f"{name}: token counts differ (whale {w['tokens']}, HF {n})")
        rows.append((name, nbytes / 1e6, n, nbytes / hf_med / 1e6, w["mb_per_second"]))
    print(f"HF tokenizers {__version__}, single thread, {len(rows)} corpora, median of {args.repeats}")
    print(f"| corpus | MB | tokens | HF tokenizers MB/s | whale MB/s | whale / HF |")
    print(f"|---|---|---|---|---|---|")
    for name, mb, n, hf_mbs, w_mbs in rows:
        print(f"| {name} | {mb:.2f} | {n} | {hf_mbs:.2f} | {w_mbs:.2f} | {w_mbs / hf_mbs:.2f}x |")


if __name__ == "__main__":
    main()
