"""`whale tokenizer train` writes a tokenizer.json that HF `tokenizers` loads and encodes exactly
as whale does. Usage: test_trained_tokenizer.py WHALE_BINARY (needs PyPI `tokenizers`)."""
import json
import os
import subprocess
import sys
import tempfile

from tokenizers import Tokenizer

whale = sys.argv[1]
with tempfile.TemporaryDirectory() as tmp:
    data = os.path.join(tmp, "d.jsonl")
    subprocess.run([whale, "data", "gen", "--count", "400", "--thinking", "0.5", "-o", data], check=True)
    extra = os.path.join(tmp, "extra.txt")
    with open(extra, "w", encoding="utf-8") as f:
        f.write("Unicode: 深度求索 café — naïve 😀 ÄÖÜ ß, tabs\tand  spaces\r\n" * 3)
    out = os.path.join(tmp, "tok")
    msg = subprocess.run([whale, "tokenizer", "train", data, extra, "-o", out, "--vocab-size", "700",
                          "--min-frequency", "1"], check=True, capture_output=True, text=True).stdout
    hf = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    cfg = json.load(open(os.path.join(out, "tokenizer_config.json"), encoding="utf-8"))
    # Training stops early once every word is one token; whale reports the size it reached.
    assert f": {hf.get_vocab_size()} ids" in msg and hf.get_vocab_size() > 400, (hf.get_vocab_size(), msg)
    assert hf.token_to_id(cfg["bos_token"]) == 0 and hf.token_to_id(cfg["eos_token"]) == 1

    texts = []
    for line in open(data, encoding="utf-8"):
        j = json.loads(line)
        q, a = j["messages"][0]["content"], j["messages"][1]
        texts.append(q)
        texts.append(a["reasoning_content"] + "</think>" + a["content"])
        texts.append("<｜begin▁of▁sentence｜><｜User｜>" + q + "<｜Assistant｜><think>")
    texts += ["", " ", "12345678901234567890", "  leading and trailing  ", "深度求索 模型 テスト 한국어",
              "emoji 😀😀 and ZWJ 👩‍👩‍👧", "line\nbreaks\r\n\r\nand\ttabs", "<｜tool▁sep｜>{\"a\": 1}</think>",
              "x = (25 + 3) * 4 = 112", "Ünïcödé çömbïnïng é"]
    proc = subprocess.run([whale, "tokenize", "--tokenizer", out, "--jsonl"],
                          input="\n".join(json.dumps(t) for t in texts) + "\n", capture_output=True, text=True,
                          check=True)
    got = [json.loads(l) for l in proc.stdout.splitlines()]
    # whale skips empty input lines; "" is json.dumps'd as "\"\"" so it is not empty.
    assert len(got) == len(texts), (len(got), len(texts))
    bad = 0
    for t, ids in zip(texts, got):
        ref = hf.encode(t, add_special_tokens=False).ids
        if ids != ref:
            bad += 1
            print("MISMATCH", repr(t), ids, ref)
        assert hf.decode(ref, skip_special_tokens=False) == t or "<｜" in t, repr(t)
    assert bad == 0, f"{bad} of {len(texts)} encodings differ"
    print(f"ok: {len(texts)} texts encode identically in whale and HF tokenizers ({hf.get_vocab_size()} ids)")
