"""whale's tokenizer gives HF `tokenizers`' ids for every code point, whatever PCRE2 the system
has: its pre-tokenizer classes come from pinned Unicode tables (scripts/gen_unicode_tables.py).

  1. Every code point of planes 0-3 and 14 (surrogates aside), each in several contexts
     (after and before letters, after a space, before punctuation and digits, alone between
     spaces), with DeepSeek-V3's real tokenizer: the code points are packed, 64 to a text, so
     the whole sweep is about 5,000 texts.
  2. A differential fuzz test: thousands of texts generated with a fixed seed from scripts,
     emoji and ZWJ sequences, combining marks, digits, whitespace runs, code and the special
     tokens' text.

Usage: test_unicode.py WHALE_BINARY TOKENIZER_DIR [--seed S] [--fuzz N]   (needs PyPI `tokenizers`)
"""
import argparse
import json
import os
import random
import subprocess
import sys

from tokenizers import Tokenizer

ap = argparse.ArgumentParser()
ap.add_argument("whale")
ap.add_argument("tokenizer")
ap.add_argument("--seed", type=int, default=20261206)
ap.add_argument("--fuzz", type=int, default=4000)
args = ap.parse_args()

hf = Tokenizer.from_file(args.tokenizer + "/tokenizer.json")


def whale_ids(texts):
    proc = subprocess.run([args.whale, "tokenize", "--tokenizer", args.tokenizer, "--jsonl"],
                          input="\n".join(json.dumps(t) for t in texts) + "\n", capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit("whale tokenize failed: " + proc.stderr)
    return [json.loads(line) for line in proc.stdout.splitlines()]


def compare(name, texts):
    want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    got = whale_ids(texts)
    assert len(got) == len(texts), f"{name}: {len(got)} results for {len(texts)} texts"
    bad = [i for i in range(len(texts)) if got[i] != want[i]]
    for i in bad[:5]:
        t = texts[i]
        # Narrow a packed text down to the first differing segment for the message.
        print(f"{name}: text {i} differs: {t[:80]!r}...\n  whale {got[i][:20]}\n  hf    {want[i][:20]}")
    assert not bad, f"{name}: {len(bad)} of {len(texts)} texts differ from HF tokenizers"
    print(f"{name}: {len(texts)} texts, all ids equal to HF tokenizers")


# 1. Every code point of planes 0-3 and 14, in contexts.
def contexts(c):
    return f"a{c}b {c}. {c}1{c}中{c}\n {c} "


cps = [cp for plane in (0, 1, 2, 3, 14) for cp in range(plane << 16, (plane + 1) << 16)
       if not 0xD800 <= cp <= 0xDFFF]
texts = ["".join(contexts(chr(cp)) for cp in cps[i:i + 64]) for i in range(0, len(cps), 64)]
# The sanitizer build (ten times slower) checks memory safety on every 8th text; the release
# build checks every code point.
sanitized = bool(os.environ.get("WHALE_SANITIZED"))
compare("every code point" + (" (every 8th text, sanitizer build)" if sanitized else ""),
        texts[::8] if sanitized else texts)

# 2. Differential fuzz.
rng = random.Random(args.seed)
pieces = {
    "latin": "The quick brown fox jumps over the lazy dog café naïve ÆØÅ ß İstanbul",
    "cyrillic": "Съешь же ещё этих мягких французских булок",
    "greek": "Ξεσκεπάζω τὴν ψυχοφθόρα βδελυγμία",
    "cjk": "深度求索人工智能基础技术研究 テスト ひらがな カタカナ 한국어 텍스트",
    "arabic": "صِف خَلقَ خَودِ كَمِثلِ الشَمسِ إِذ بَزَغَت",
    "hebrew": "עטלף אבק נס דרך מזגן שהתפוצץ כי חם",
    "devanagari": "ऋषियों को सताने वाले दुष्ट राक्षसों के राजा",
    "thai": "เป็นมนุษย์สุดประเสริฐเลิศคุณค่า",
    "emoji": "😀🐳🩷🪿🫨👍🏽🇯🇵❤️‍🔥👩‍👩‍👧‍👦🏳️‍🌈🧑🏿‍💻",
    "marks": "e\u0301 a\u0308 n\u0303 \u0915\u094d\u0937 Z\u0351\u0352\u0353 \u0e01\u0e34",
    "digits": "0123456789 ١٢٣ ߁߂ ௧௨ 12,345.67 3.14159e-10 ½ ² Ⅻ",
    "space": " \t\n\r\u00a0\u1680\u2000\u2003\u2028\u2029\u202f\u205f\u3000\u200b\ufeff",
    "code": "def f(x):\n    return x**2  # square\nint main(){return 0;}\n<div class=\"a\">&amp;</div>",
    "punct": "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ «» „“ ‹› — … ¿¡ 。、「」",
    "special": "<｜begin▁of▁sentence｜><｜User｜><｜Assistant｜><think></think><｜tool▁calls▁begin｜>"
               "<｜tool▁sep｜><｜end▁of▁sentence｜>",
    "new": "\U00010D50\U00010D51 \U00016D43\U00016D44 \U0002EBF0 \U00011F04 \U0001FAE9 \U0001FA77",
    "rare": "\U000E0001\U000E0041 \U000F0000 \U00100000 \U0001D400\U0001D7CE \u0378\u0379 \uFFFD",
}
names = list(pieces)
fuzz = []
for _ in range(args.fuzz // 4 if sanitized else args.fuzz):
    parts = []
    for _ in range(rng.randint(1, 8)):
        src = pieces[rng.choice(names)]
        a = rng.randrange(len(src))
        parts.append(src[a:a + rng.randint(1, 24)])
        if rng.random() < 0.3:
            parts.append(rng.choice([" ", "  ", "\n", "\n\n", "\t", " \n ", "   \t"]))
        if rng.random() < 0.1:
            parts.append(chr(rng.choice([rng.randrange(0x20, 0x3000), rng.randrange(0x10000, 0x30000),
                                         rng.randrange(0xE0000, 0xE0200)])))
    fuzz.append("".join(parts).replace("\ud800", ""))
compare(f"fuzz (seed {args.seed})", [t for t in fuzz if not any(0xD800 <= ord(c) <= 0xDFFF for c in t)])
