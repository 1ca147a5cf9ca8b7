#!/usr/bin/env bash
# Cross-engine check: whale and llama.cpp give the same greedy tokens on the GGUF file llama.cpp's
# own converter writes from a DeepSeek-V4 checkpoint in the released FP8/FP4 layout.
#
#   bench/crosscheck_llamacpp.sh /path/to/llama.cpp [N]
#
# The llama.cpp checkout is yours, outside this repository, built (build/bin/libllama.so); this
# script compiles bench/llamacpp_greedy.cpp against it. The model: whale init of
# bench/configs/deepseek-v4-tiny-runnable.json (V4's per-head shapes: head_dim 512, rope 64,
# indexer 128, which llama.cpp's deepseek4 graph assumes; the golden V4 checkpoints are smaller
# and stop it at graph build), converted by llama.cpp's convert_hf_to_gguf.py, plus the files
# `whale quantize` writes from the same checkpoint in q8_0 and q4_k_m (MXFP4 experts kept): llama.cpp
# must load those too. Prompts are fixed token ids; each line prints both continuations and
# whether they agree.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
llama=$(cd "${1:?usage: $0 LLAMA_CPP_DIR [N]}" && pwd)
n=${2:-16}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
g++ -O2 -std=c++17 "$here/bench/llamacpp_greedy.cpp" -I"$llama/include" -I"$llama/ggml/include" -L"$llama/build/bin" \
  -lllama -lggml -lggml-base -Wl,-rpath,"$llama/build/bin" -o "$work/greedy"
"$here/build/whale" init --config "$here/bench/configs/deepseek-v4-tiny-runnable.json" --out "$work/m" --dtype fp8 --seed 7 >/dev/null
cp "$here/tests/fixtures/tiny_tokenizer/"* "$work/m/"
python3 "$here/tests/golden/make_llamacpp_ggufs.py" --convert "$llama" "$work/m" bf16 "$work/llamacpp-mxfp4_moe.gguf" >/dev/null 2>&1
for type in q8_0 q4_k_m; do "$here/build/whale" quantize "$work/m" "$work/whale-$type.gguf" --type $type >/dev/null; done
fail=0
for file in llamacpp-mxfp4_moe whale-q8_0 whale-q4_k_m; do
  for prompt in 0,5,17,42,100,7,9,33 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20 0,250,3,250,3,250,3; do
    theirs=$("$work/greedy" "$work/$file.gguf" "$n" "$prompt" 2>/dev/null || echo "llama.cpp failed")
    ours=$("$here/build/whale" generate --model "$work/$file.gguf" --tokens "$prompt" --max-tokens "$n" 2>/dev/null | tr -d '[] ')
    same=$([ "$theirs" = "$ours" ] && echo same || echo DIFFERENT)
    [ "$same" = same ] || fail=1
    echo "$file prompt $prompt: llama.cpp $theirs | whale $ours | $same"
  done
done
exit $fail
