#!/usr/bin/env python3
"""KL divergence and top-1 agreement of models' logits against a reference model's, on text.

  quant_quality.py --whale BIN --reference DIR --text FILE.jsonl MODEL [MODEL ...]

Each line of FILE.jsonl holds {"text": ...}; each text is tokenized with the reference's
tokenizer (BOS first) and every model's logits at every position come from `whale logits`.
Prints one Markdown row per model: KL(reference || model) over positions (mean, median, 99th
percentile, max, as llama.cpp's perplexity tool reports them), top-1 agreement, and the
model's perplexity of the text.
"""
import argparse, json, math, os, subprocess, sys


def logits_of(whale, model, ids, threads):
    out = subprocess.run([whale, "logits", "--model", model, "--tokens", ",".join(map(str, ids)), "-t", str(threads)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["logits"]


def log_softmax(row):
    m = max(row)
    s = math.log(sum(math.exp(v - m) for v in row))
    return [v - m - s for v in row]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--whale", required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("-t", "--threads", default="0")
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()

    texts = [json.loads(line)["text"] for line in open(a.text) if line.strip()]
    enc = subprocess.run([a.whale, "tokenize", "--tokenizer", a.reference, "--jsonl", "--bos"],
                         input="".join(json.dumps(t) + "\n" for t in texts), check=True, capture_output=True, text=True)
    seqs = [json.loads(line) for line in enc.stdout.splitlines() if line.strip()]

    ref = [[log_softmax(r) for r in logits_of(a.whale, a.reference, ids, a.threads)] for ids in seqs]
    positions = sum(len(s) - 1 for s in seqs)
    ref_nll = -sum(ref[k][i][seqs[k][i + 1]] for k in range(len(seqs)) for i in range(len(seqs[k]) - 1))
    print(f"{len(seqs)} held-out texts, {sum(map(len, seqs))} positions; reference perplexity "
          f"{math.exp(ref_nll / positions):.3f}")
    print("| model | size | KL mean | KL median | KL p99 | KL max | top-1 agreement | perplexity |")
    print("|---|---|---|---|---|---|---|---|")
    for model in a.models:
        kls, agree, n, nll = [], 0, 0, 0.0
        for k, ids in enumerate(seqs):
            got = logits_of(a.whale, model, ids, a.threads)
            for i, row in enumerate(got):
                q, p = log_softmax(row), ref[k][i]
                kls.append(sum(math.exp(pv) * (pv - qv) for pv, qv in zip(p, q)))
                agree += max(range(len(p)), key=p.__getitem__) == max(range(len(q)), key=q.__getitem__)
                n += 1
                if i + 1 < len(ids):
                    nll -= q[ids[i + 1]]
        size = os.path.getsize(model) / 2**20
        kls.sort()
        print(f"| {os.path.basename(model)} | {size:.1f} MiB | {sum(kls) / n:.2e} | {kls[n // 2]:.2e} | "
              f"{kls[min(n - 1, int(0.99 * n))]:.2e} | {kls[-1]:.2e} | "
              f"{agree}/{n} ({100 * agree / n:.2f}%) | {math.exp(nll / positions):.3f} |")


if __name__ == "__main__":
    sys.exit(main())
