"""Serving load generator: `whale serve` against llama.cpp's `llama-server` on the same GGUF file.
Standard library only.

  python3 bench/load_bench.py MODEL --whale build/whale --llama-server /path/to/llama-server \
      [--streams 1,4,16,64] [--prompts 128,512] [--tokens 128] [--duration 20] [--rounds 1]

For each number of streams N, each engine in turn (alternately, --rounds times) is started with
room for N sequences (whale serve --parallel N, llama-server --parallel N with N times the
per-stream context), warmed up, and then driven by N client threads for --duration seconds:
each thread sends streamed /v1/completions requests back to back, prompts cycling through the
--prompts mix (approximate token counts of distinct text, so no request hits a prefix cache),
each generating exactly --tokens tokens (EOS banned with logit_bias, and ignore_eos for
llama-server). Requests started before the deadline run to their end. Reports per engine and N:
aggregate generated tokens/s (all completion tokens over the wall time from the first request
to the last answer), median and p99 time to first token, requests finished, and the ratio.
Peers are built outside this repository (BENCHMARKS.md).
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, argv, port):
        self.argv, self.port = argv, port

    def __enter__(self):
        self.log = open(os.devnull, "w")
        self.p = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"server exited with {self.p.returncode}: {' '.join(self.argv)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except Exception:
                time.sleep(0.5)
        raise RuntimeError("server did not become healthy: " + " ".join(self.argv))

    def __exit__(self, *exc):
        self.p.terminate()
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
        self.log.close()


def prompt_text(tag, n_tokens):
    # Distinct short words: DeepSeek's tokenizer gives about two tokens per "wNNN" word.
    return f"Request {tag}. " + " ".join(f"w{(hash(tag) + i) % 997}" for i in range(max(1, n_tokens // 2)))


def one_request(port, prompt, tokens, eos, seed):
    """(seconds to first token, completion tokens, prompt tokens) of one streamed completion."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    body = {"prompt": prompt, "max_tokens": tokens, "temperature": 0.7, "seed": seed, "stream": True,
            "stream_options": {"include_usage": True}, "logit_bias": {str(e): -100 for e in eos}, "ignore_eos": True}
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]!r}")
    ttft, chunks, usage = None, 0, None
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            usage = chunk["usage"]
        for ch in chunk.get("choices", []):
            if ch.get("text"):
                chunks += 1
                if ttft is None:
                    ttft = time.perf_counter() - t0
    c.close()
    done = usage["completion_tokens"] if usage else chunks
    return ttft if ttft is not None else time.perf_counter() - t0, done, usage["prompt_tokens"] if usage else None


def load(port, streams, prompts, tokens, eos, duration):
    results, lock = [], threading.Lock()
    t_start = time.perf_counter()
    deadline = t_start + duration

    def worker(w):
        i = 0
        while time.perf_counter() < deadline:
            n = prompts[(w + i) % len(prompts)]
            r = one_request(port, prompt_text(f"{w}-{i}-{time.perf_counter()}", n), tokens, eos, w * 1000 + i)
            with lock:
                results.append(r)
            i += 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    ttfts = sorted(r[0] for r in results)
    p99 = ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))]
    prompt_tokens = [r[2] for r in results if r[2] is not None]
    return {"tok_s": sum(r[1] for r in results) / wall, "ttft_median": statistics.median(ttfts), "ttft_p99": p99,
            "requests": len(results), "prompt_tokens": statistics.mean(prompt_tokens) if prompt_tokens else 0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--whale", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "whale"))
    ap.add_argument("--llama-server", help="llama.cpp's llama-server binary (built outside this repository)")
    ap.add_argument("--streams", default="1,4,16,64")
    ap.add_argument("--prompts", default="128,512", help="approximate prompt tokens, cycled through")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--eos", default="1", help="comma-separated EOS ids to ban")
    ap.add_argument("--json", help="also write the raw results here")
    a = ap.parse_args()
    eos = [int(x) for x in a.eos.split(",") if x]
    prompts = [int(x) for x in a.prompts.split(",")]
    per_stream = max(prompts) * 2 + a.tokens + 64  # context one stream may need
    engines = ["whale"] + (["llama"] if a.llama_server else [])
    rows = {}
    for n in [int(x) for x in a.streams.split(",")]:
        for rnd in range(a.rounds):
            for engine in engines:
                port = free_port()
                if engine == "whale":
                    argv = [a.whale, "serve", a.model, "--port", str(port), "--threads", str(a.threads),
                            "--parallel", str(n), "--ctx", str(per_stream)]
                else:
                    argv = [a.llama_server, "-m", a.model, "--port", str(port), "-t", str(a.threads), "--parallel", str(n),
                            "-c", str(per_stream * n), "--no-webui"]
                with Server(argv, port):
                    one_request(port, prompt_text("warm-up", 16), 8, eos, 0)
                    r = load(port, n, prompts, a.tokens, eos, a.duration)
                rows.setdefault((n, engine), []).append(r)
                print(f"# {engine} streams={n} round={rnd + 1}: {r['tok_s']:.1f} tok/s, TTFT median "
                      f"{r['ttft_median']:.2f} s p99 {r['ttft_p99']:.2f} s, {r['requests']} requests, "
                      f"{r['prompt_tokens']:.0f} prompt tokens on average", file=sys.stderr, flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({f"{n}-{e}": v for (n, e), v in rows.items()}, f, indent=1)
    med = lambda n, e, k: statistics.median(r[k] for r in rows[(n, e)])
    print("| streams | whale tok/s | llama-server tok/s | ratio | whale TTFT median / p99 | llama-server TTFT median / p99 |")
    print("|---|---|---|---|---|---|")
    for n in sorted({n for n, _ in rows}):
        w = (med(n, "whale", "tok_s"), med(n, "whale", "ttft_median"), med(n, "whale", "ttft_p99"))
        if "llama" in engines:
            l = (med(n, "llama", "tok_s"), med(n, "llama", "ttft_median"), med(n, "llama", "ttft_p99"))
            print(f"| {n} | {w[0]:.1f} | {l[0]:.1f} | {w[0] / l[0]:.2f}x | {w[1]:.2f} / {w[2]:.2f} s | {l[1]:.2f} / {l[2]:.2f} s |")
        else:
            print(f"| {n} | {w[0]:.1f} | | | {w[1]:.2f} / {w[2]:.2f} s | |")


if __name__ == "__main__":
    main()
