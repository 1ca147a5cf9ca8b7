"""Writes DeepSeek-V3's tokenizer cut down to the first N ids into a model directory.

Random-weight benchmark models need a tokenizer whose size matches their vocab_size (GGUF
files embed it and llama.cpp refuses a mismatch); V2-Lite's shape has 102400 ids. Ids >= N
and merges that need them are dropped; the special tokens (BOS = 0, EOS = 1) survive.
Standard library only.  python3 bench/make_bench_tokenizer.py SRC_DIR N OUT_DIR
"""
import json
import os
import sys

src, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tok = json.load(open(os.path.join(src, "tokenizer.json"), encoding="utf-8"))
vocab = {t: i for t, i in tok["model"]["vocab"].items() if i < n}
merges = []
for m in tok["model"]["merges"]:
    a, b = m.split(" ", 1) if isinstance(m, str) else m
    if a in vocab and b in vocab and a + b in vocab:
        merges.append(m)
tok["model"]["vocab"] = vocab
tok["model"]["merges"] = merges
tok["added_tokens"] = [a for a in tok["added_tokens"] if a["id"] < n]
os.makedirs(out, exist_ok=True)
json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8"), ensure_ascii=False)
cfg = json.load(open(os.path.join(src, "tokenizer_config.json"), encoding="utf-8"))
cfg.pop("added_tokens_decoder", None)
json.dump(cfg, open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8"), ensure_ascii=False)
print(f"{out}: {len(vocab)} vocab entries, {len(merges)} merges")
