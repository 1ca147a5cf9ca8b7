"""Serving benchmark for `whale serve`: aggregate generation throughput at 1, 4 and 16
concurrent streams, and time to first token for a ~4K-token prompt without and with a
prefix-cache hit. Standard library only.

  python3 bench/server_bench.py WHALE MODEL [--tokens 64] [--prompt 4096] [--serve "extra serve args"]

Each stream asks for exactly --tokens tokens (EOS suppressed with logit_bias so every
stream does the same work). Prints a markdown table; medians over --repeats runs.
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "server"))
from whale_server import WhaleServer  # noqa: E402


def stream_chat(port, messages, max_tokens, seed, eos_ids):
    """(seconds to first token, seconds total, completion tokens) of one streamed chat."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0.7, "seed": seed, "stream": True,
            "stream_options": {"include_usage": True}, "logit_bias": {str(e): -100 for e in eos_ids}}
    t0 = time.perf_counter()
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]}")
    ttft, tokens = None, 0
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        for ch in chunk["choices"]:
            d = ch["delta"]
            if ttft is None and (d.get("content") or d.get("reasoning_content")):
                ttft = time.perf_counter() - t0
    c.close()
    return ttft, time.perf_counter() - t0, tokens


def throughput(port, streams, max_tokens, eos_ids):
    results = [None] * streams

    def run(i):
        results[i] = stream_chat(port, [{"role": "user", "content": f"Write story number {i} about a whale."}],
                                 max_tokens, i, eos_ids)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    tokens = sum(r[2] for r in results)
    return tokens / wall, statistics.median(r[0] for r in results)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("whale")
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=4096, help="approximate prompt tokens for the TTFT test")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eos", default="1", help="comma-separated EOS ids to suppress")
    ap.add_argument("--serve", default="", help="extra `whale serve` arguments, space-separated")
    a = ap.parse_args()
    eos = [int(x) for x in a.eos.split(",") if x]
    args = ["--parallel", "16", "--ctx", str(a.prompt + 1024), "--kv-tokens", str(16 * 1024 + a.prompt + 1024), *a.serve.split()]
    with WhaleServer(a.whale, a.model, *args) as s:
        port = int(s.url.rsplit(":", 1)[1])
        stream_chat(port, [{"role": "user", "content": "warm up"}], 8, 0, eos)  # page the weights in
        print(f"| streams | generated tok/s (median of {a.repeats}) | median TTFT |")
        print("|---|---|---|")
        for n in (1, 4, 16):
            runs = [throughput(port, n, a.tokens, eos) for _ in range(a.repeats)]
            print(f"| {n} | {statistics.median(r[0] for r in runs):.1f} | {statistics.median(r[1] for r in runs) * 1e3:.0f} ms |")
            sys.stdout.flush()
        # A long prompt of distinct words (so the tokenizer gives about one token per word).
        misses, hits, n_prompt = [], [], 0
        for rep in range(a.repeats):
            words = " ".join(f"w{rep}x{i}" for i in range(a.prompt // 4))
            msgs = [{"role": "user", "content": words}]
            miss = stream_chat(port, msgs, 4, 0, eos)
            hit = stream_chat(port, msgs, 4, 0, eos)
            misses.append(miss[0])
            hits.append(hit[0])
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("POST", "/v1/chat/completions", json.dumps({"messages": msgs, "max_tokens": 1}), {"Content-Type": "application/json"})
        usage = json.loads(c.getresponse().read())["usage"]
        m, h = statistics.median(misses), statistics.median(hits)
        print()
        print(f"| prompt tokens | TTFT, prefix-cache miss | TTFT, prefix-cache hit | ratio |")
        print("|---|---|---|---|")
        print(f"| {usage['prompt_tokens']} ({usage['prompt_tokens_details']['cached_tokens']} cached on a hit) | "
              f"{m * 1e3:.0f} ms | {h * 1e3:.1f} ms | {m / h:.0f}x |")


if __name__ == "__main__":
    main()
