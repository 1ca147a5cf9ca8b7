#!/usr/bin/env python3
"""Builds the tokenizer exactness corpus and its expected ids.

    pip install tokenizers
    python3 tests/tokenizer/make_corpus.py [PATH/TO/tokenizer.json]

Writes tests/tokenizer/corpus.jsonl (one JSON string per line: hand-written texts in many
scripts plus deterministic random mixtures of them) and expected.jsonl (the ids HF
`tokenizers` gives each text with add_special_tokens=False). The default tokenizer is
DeepSeek-V3's, from ../shared/tokenizers/deepseek-v3 beside the repository.
"""
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = os.path.join(HERE, "..", "..", "..", "shared", "tokenizers", "deepseek-v3", "tokenizer.json")

BASE = [
    # English prose, punctuation, contractions, casing
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! How are you doing today? I'm fine, thanks; you're kind.",
    "It's a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
    "DON'T SHOUT!!! ...or whisper... (maybe) [brackets] {braces} <angles>",
    "e.g. i.e. etc. Mr. Smith's 3rd-floor office—open 9am–5pm.",
    "“Smart quotes” and ‘single ones’ — em dashes … ellipses",
    "Email me at someone@example.com or visit https://example.org/path?q=1&r=2#frag",
    "A sentence with    multiple   spaces and trailing spaces   ",
    "   leading spaces",
    "tabs\tbetween\twords\t\tand\t\t\tmore",
    "line one\nline two\n\nline four\n\n\n",
    "windows\r\nline\r\nendings\r\n\r\n",
    "mixed \r\n \n\r \t \u000b \u000c end",
    "naïve café résumé coöperate fiancée Zürich São Paulo",
    # code
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i] * c; } // vectorised?",
    "const x = await fetch(`/api/${id}`).then(r => r.json());",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name HAVING COUNT(*) > 1;",
    "<div class=\"box\"><span id='x'>text</span></div>",
    "fn main() { let v: Vec<u8> = vec![1, 2, 3]; println!(\"{:?}\", v); }",
    "x=1;y=2;z=x+y;print(z)  # comment\n\t\tindented",
    "    # 4-space indent\n        # 8-space indent\n",
    "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}",
    "$ ls -la | grep '\\.cpp$' && make -j$(nproc) 2>&1 | tee log.txt",
    "@decorator\nclass Foo(Base):\n    __slots__ = ('a', '_b')\n",
    # Chinese
    "你好，世界！今天天气很好。",
    "深度求索是一家人工智能公司，专注于大语言模型的研究。",
    "中文和English混合的句子，包括数字123和标点。",
    "《红楼梦》是中国古典四大名著之一。",
    "龘靐齉麤",
    # Japanese
    "こんにちは、世界！カタカナとひらがなと漢字。",
    "東京タワーは高さ333メートルです。",
    "ｶﾀｶﾅ（半角）とカタカナ（全角）",
    # Korean
    "안녕하세요, 세계! 한국어 문장입니다.",
    "대한민국의 수도는 서울입니다. 2024년",
    # Arabic
    "مرحبا بالعالم! هذه جملة باللغة العربية.",
    "العدد ١٢٣٤٥ بالأرقام العربية الهندية",
    # Devanagari
    "नमस्ते दुनिया! यह एक हिंदी वाक्य है।",
    "संस्कृतम् भाषा अतीव प्राचीना अस्ति।",
    # Thai
    "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    # other scripts
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "Γειά σου κόσμε! Ελληνικά γράμματα αβγδ.",
    "שלום עולם! זה משפט בעברית.",
    "Բարեւ աշխարհ ქართული ენა",
    # emoji
    "I love pizza 🍕 and tacos 🌮!",
    "Family: 👨‍👩‍👧‍👦 Couple: 👩‍❤️‍👨 Tech: 🧑🏽‍💻",
    "Flags: 🇺🇸 🇯🇵 🇫🇷 🇨🇳 🏳️‍🌈 🏴‍☠️",
    "Skin tones: 👋🏻 👋🏼 👋🏽 👋🏾 👋🏿 and keycaps 1️⃣ #️⃣",
    "😀😃😄😁😆😅🤣😂🙂🙃",
    # digits
    "1234567890",
    "3.14159265358979323846264338327950288419716939937510",
    "Phone: +1 (555) 123-4567, ZIP 90210, year 2025, 1,000,000.00",
    "0 00 000 0000 00000 000000 0000000",
    "٠١٢٣٤٥٦٧٨٩ and ０１２３４５ and ①②③ and Ⅻ",
    "v1.2.3-rc.4+build.567",
    # whitespace oddities
    "non\u00a0breaking\u00a0space and narrow\u202fno-break",
    "zero\u200bwidth\u200bspace and joiner\u200dhere\u200c",
    "ideographic\u3000space and em\u2003space and thin\u2009space",
    "\u00a0\u00a0 leading nbsp",
    "trailing newline\n",
    "\n\n\nleading newlines",
    " ",
    "\t",
    "\n",
    "\r\n",
    "  \n  \n  ",
    # combining marks
    "e\u0301 a\u0300 o\u0308 n\u0303 — decomposed accents",
    "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇ text",
    "क्षत्रिय and ज्ञान with virama",
    "\u0301 starts with a combining mark",
    # special tokens inline
    "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜>",
    "<｜User｜>What is 2+2?<｜Assistant｜><think>\n2+2=4\n</think>The answer is 4.<｜end▁of▁sentence｜>",
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    "text<｜fim▁hole｜>more<｜fim▁begin｜>x<｜fim▁end｜>",
    "<｜User｜><｜User｜><｜Assistant｜>",
    "almost special <｜User| and <|User｜> and <｜Use｜>",
    "<｜place▁holder▁no▁17｜> placeholder token",
    "<|EOT|> old style",
    # punctuation runs and symbols
    "!!!???...,,,;;;:::",
    "~`@#$%^&*()_+-=[]{}|\\;:'\",.<>/?",
    "→ ← ↑ ↓ ∀ ∃ ∈ ∑ ∏ √ ∞ ≈ ≠ ≤ ≥ ∫ ∂",
    "€100 £50 ¥1000 ₹500 ₿0.5 $20",
    "©®™ §¶ †‡ •◦ ° ± × ÷",
    "a-b_c.d/e\\f:g;h,i!j?k",
    "'quoted' \"double\" `back`",
    "\"\n\"",
    "a'b's'c're",
    "don't won't can't I've we'll she'd they're",
    # mixed
    "Mixing 中文, 日本語, 한국어, العربية, and हिन्दी in one line!",
    "The formula E=mc² and H₂O, x³+y³=z³ (Fermat).",
    "Markdown: **bold**, _italic_, `code`, [link](http://x.y), # Heading\n- item\n1. item",
    "| col1 | col2 |\n|------|------|\n| a    | b    |",
    "ALLCAPSWORD lowercaseword MixedCaseWord camelCaseWord snake_case_word kebab-case-word",
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
]

SEPARATORS = [" ", "", "\n", "\t", "  ", "\r\n", ", ", "\u00a0", "\n\n", " \n "]
RANGES = [(0x20, 0x7e), (0x4e00, 0x4fff), (0x3040, 0x30ff), (0xac00, 0xad00), (0x0600, 0x06ff),
          (0x0900, 0x097f), (0x0e00, 0x0e7f), (0x1f300, 0x1f64f), (0x0300, 0x036f), (0x2000, 0x206f),
          (0x00a0, 0x00ff), (0x0400, 0x04ff)]


def random_text(rng):
    kind = rng.randrange(6)
    if kind == 0:  # two samples joined
        return rng.choice(BASE) + rng.choice(SEPARATORS) + rng.choice(BASE)
    if kind == 1:  # a slice of a sample at character boundaries
        s = rng.choice(BASE)
        a = rng.randrange(len(s))
        return s[a:a + rng.randrange(1, 40)]
    if kind == 2:  # random code points from chosen blocks
        out = []
        for _ in range(rng.randrange(1, 30)):
            lo, hi = rng.choice(RANGES)
            cp = rng.randrange(lo, hi + 1)
            if 0xd800 <= cp <= 0xdfff:
                continue
            out.append(chr(cp))
        return "".join(out)
    if kind == 3:  # digit and whitespace runs
        return "".join(rng.choice(["7", "42", "999", "1234", " ", "\n", "\t", "x", ".", "\u00a0", "\r\n"])
                       for _ in range(rng.randrange(1, 25)))
    if kind == 4:  # a sample with random whitespace inserted
        s = list(rng.choice(BASE))
        for _ in range(rng.randrange(1, 5)):
            s.insert(rng.randrange(len(s) + 1), rng.choice(SEPARATORS + ["   ", "\t\t"]))
        return "".join(s)
    words = ["the", "of", "and", "数据", "モデル", "모델", "x", "123", "🙂", "<｜User｜>", "</think>", "<think>",
             "é", "\u0301", "  ", "\n", "don't", "—", "ab_cd", "https://a.b"]
    return "".join(rng.choice(words) + rng.choice(["", " "]) for _ in range(rng.randrange(1, 20)))


def main():
    from tokenizers import Tokenizer
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT
    tok = Tokenizer.from_file(path)
    rng = random.Random(20261122)
    texts = list(BASE)
    seen = set(texts)
    while len(texts) < 360:
        t = random_text(rng)
        if t and t not in seen:
            seen.add(t)
            texts.append(t)
    with open(os.path.join(HERE, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    with open(os.path.join(HERE, "expected.jsonl"), "w") as f:
        for t in texts:
            f.write(json.dumps(tok.encode(t, add_special_tokens=False).ids) + "\n")
    print(f"{len(texts)} texts")


if __name__ == "__main__":
    main()
