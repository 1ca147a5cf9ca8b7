#!/usr/bin/env python3
"""GGUF files written by llama.cpp's own tools from the golden checkpoints (tests/golden/llamacpp).

whale must load the files users already have: these come from llama.cpp's convert_hf_to_gguf.py
(BF16, exactly the checkpoints' weights, and its own Python Q8_0) and from llama-quantize (Q4_K_M,
which on these 64-wide tiny models falls back to Q5_0 and Q8_0 for every matrix, as the rows of
DeepSeek-V2-Lite's 1408-wide ffn_down_exps do in real Q4_K_M files). tests/gguf_model_test.cpp checks them against
the Hugging Face logits in each golden's expected.json.

The checkpoints carry the tiny test tokenizer (tests/fixtures/tiny_tokenizer), which has
DeepSeek-V3's pre-tokenizer but not its vocabulary, so the converter's pre-tokenizer check (a
hash of token ids of a sample text) does not recognise it; the converter is told it is
"deepseek-v3", which is what it would detect for the real tokenizer. Nothing else is changed.

DeepSeek-V4's converter (deepseek4) writes one layout whatever --outtype says: the FP4 experts
repacked to MXFP4, FP8 matrices Q8_0 (F16 where a row is not whole blocks), BF16 and F32 tensors as
stored, general.file_type MOSTLY_MXFP4_MOE; it takes only the released FP8/FP4 layout (v4_fp8).
Its file is named after that type ("mxfp4_moe=bf16": file label = the --outtype passed).

DeepSeek-V3.2's converter (deepseek32) asserts the tokenizer's add_bos_token, which
transformers 5's tokenizer objects no longer carry; it is set to True on the loaded tokenizer,
as the converter's own message asks of tokenizer_config.json. Nothing else is changed.

Needs a llama.cpp checkout built outside this repository (llama-quantize, llama-gguf-split in build/bin) and the
converter's Python requirements (torch, transformers, numpy, sentencepiece). From the repo root:
    [LLAMA_CPP_COMMIT=sha] python3 tests/golden/make_llamacpp_ggufs.py /path/to/llama.cpp [--only GOLDEN ...]
(--only rebuilds those goldens' files and keeps the others and their README lines.)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "llamacpp")
# golden checkpoint -> (converter outtypes, llama-quantize types from its BF16 file)
# llama.cpp treats a deepseek2 model as "lite" (no q_lora_rank) only by its layer count (26, 27 or
# 48 layers), so llama-quantize refuses the 2-layer v2_lite golden; its BF16 file still covers the
# converter's no-q_lora layout.
# llama-quantize has no fallback for Q4_0 and stops at the goldens' 16- and 24-wide matrices, so
# Q4_0 is covered by whale's own files and the block fixtures (make_quant_fixtures.py) instead.
# golden file -> tensors per part: llama-gguf-split's split sets (what large models are published as).
SPLITS = {"v3-q8_0": 40}
FILES = {"v2_lite": (["bf16"], []), "v3": (["bf16", "q8_0"], ["Q4_K_M"]), "v32": (["bf16", "q8_0"], []),
         "v4_fp8": (["mxfp4_moe=bf16"], [])}


def convert(llama_cpp, model_dir, outtype, outfile):
    sys.path.insert(0, llama_cpp)
    sys.path.insert(1, os.path.join(llama_cpp, "gguf-py"))
    import convert_hf_to_gguf  # llama.cpp's converter, as shipped
    from conversion.base import TextModel

    TextModel.get_vocab_base_pre = lambda self, tokenizer: "deepseek-v3"
    import transformers
    load = transformers.AutoTokenizer.from_pretrained

    def with_bos(*a, **k):  # deepseek32's set_vocab asserts it (see the docstring)
        t = load(*a, **k)
        t.add_bos_token = True
        return t
    transformers.AutoTokenizer.from_pretrained = with_bos
    sys.argv = ["convert_hf_to_gguf.py", model_dir, "--outtype", outtype, "--outfile", outfile]
    convert_hf_to_gguf.main()


def main():
    only = None
    if "--only" in sys.argv:
        i = sys.argv.index("--only")
        only, sys.argv = sys.argv[i + 1:], sys.argv[:i]
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    llama_cpp = os.path.abspath(sys.argv[1])
    quantize = os.path.join(llama_cpp, "build", "bin", "llama-quantize")
    os.makedirs(OUT, exist_ok=True)
    commit = os.environ.get("LLAMA_CPP_COMMIT") or subprocess.run(
        ["git", "-C", llama_cpp, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    made = {}
    readme = os.path.join(OUT, "README.md")
    if only and os.path.exists(readme):  # keep the other goldens' lines
        for line in open(readme).read().splitlines():
            if line.startswith("- `") and line.split("`")[1].split("-")[0] not in only:
                made[line.split("`")[1]] = line.split(": ", 1)[1]
    for golden, (outtypes, qtypes) in FILES.items():
        if only and golden not in only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            model = os.path.join(tmp, golden)
            os.makedirs(model)
            for f in ("config.json", "model.safetensors"):
                shutil.copy(os.path.join(HERE, golden, f), model)
            for f in ("tokenizer.json", "tokenizer_config.json"):
                shutil.copy(os.path.join(REPO, "tests", "fixtures", "tiny_tokenizer", f), model)
            # Each conversion in a fresh interpreter: the converter keeps module-level state.
            for entry in outtypes:
                label, _, outtype = entry.rpartition("=")
                dst = os.path.join(OUT, f"{golden}-{label or outtype}.gguf")
                subprocess.run([sys.executable, __file__, "--convert", llama_cpp, model, outtype, dst], check=True)
                made[os.path.basename(dst)] = f"convert_hf_to_gguf.py --outtype {outtype}" + (
                    f" (writes {label} whatever the outtype)" if label else "")
            for q in qtypes:
                dst = os.path.join(OUT, f"{golden}-{q.lower()}.gguf")
                subprocess.run([quantize, os.path.join(OUT, f"{golden}-bf16.gguf"), dst, q], check=True, capture_output=True)
                made[os.path.basename(dst)] = f"llama-quantize {q} (from the converter's BF16 file)"
    for name, per_part in SPLITS.items():
        if only and name.split("-")[0] not in only:
            continue
        split = os.path.join(llama_cpp, "build", "bin", "llama-gguf-split")
        subprocess.run([split, "--split", "--split-max-tensors", str(per_part), os.path.join(OUT, name + ".gguf"),
                        os.path.join(OUT, name + "-split")], check=True, capture_output=True)
        for part in sorted(os.listdir(OUT)):
            if part.startswith(name + "-split-"):
                made[part] = f"llama-gguf-split --split --split-max-tensors {per_part} {name}.gguf"
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("GGUF files written by llama.cpp's own tools (commit %s of the unslothai/llama.cpp mirror) from\n"
                "the golden checkpoints with the tiny test tokenizer, by tests/golden/make_llamacpp_ggufs.py.\n\n" % commit)
        for name, how in sorted(made.items()):
            f.write(f"- `{name}`: {how}\n")
    print(json.dumps(made, indent=1))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--convert":
        convert(*sys.argv[2:])
    else:
        main()
