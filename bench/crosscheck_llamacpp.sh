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
# must load those too. Prompts are fixed token ids. llama.cpp continues each greedily; whale then
# scores the same tokens (teacher-forced: `whale logits`), and each line gives, over the generated
# positions, the mean and max KL(llama.cpp || whale) of the next-token distributions, how often
# the argmax agrees, and how many greedy tokens whale's own generation shares before the first
# difference. On random weights near-tied logits make free-running greedy text diverge after a
# flip; the teacher-forced figures do not compound. Pass: mean KL < 0.01 and argmax agreement
# >= 90% for every file. whale runs with --numerics float by default: llama.cpp's deepseek4 graph
# keeps its caches in float, without the FP8 / FP4 roundings of DeepSeek's own code (whale's
# default, NUMERICS=official).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
llama=$(cd "${1:?usage: $0 LLAMA_CPP_DIR [N]}" && pwd)
n=${2:-32}
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
    LOGITS=1 "$work/greedy" "$work/$file.gguf" "$n" "$prompt" >"$work/theirs" 2>/dev/null || { echo "$file: llama.cpp failed"; fail=1; continue; }
    theirs=$(head -1 "$work/theirs")
    "$here/build/whale" logits --model "$work/$file.gguf" --tokens "$prompt,${theirs%,*}" --numerics "${NUMERICS:-float}" >"$work/ours.json" 2>/dev/null
    ours=$("$here/build/whale" generate --model "$work/$file.gguf" --tokens "$prompt" --max-tokens "$n" --ignore-eos --numerics "${NUMERICS:-float}" 2>/dev/null | tr -d '[] ')
    python3 - "$work/theirs" "$work/ours.json" "$prompt" "$theirs" "$ours" "$file" <<'PY' || fail=1
import json, math, sys
theirs, ours, prompt, t_ids, o_ids, name = sys.argv[1:]
rows = [list(map(float, l.split(","))) for l in open(theirs).read().splitlines()[1:]]
mine = json.load(open(ours))["logits"][len(prompt.split(",")) - 1:]
def logsoftmax(x):
    m = max(x); s = math.log(sum(math.exp(v - m) for v in x)); return [v - m - s for v in x]
kls, top = [], 0
for a, b in zip(rows, mine):
    p, q = logsoftmax(a), logsoftmax(b)
    kls.append(sum(math.exp(pi) * (pi - qi) for pi, qi in zip(p, q)))
    top += a.index(max(a)) == b.index(max(b))
t, o = t_ids.split(","), o_ids.split(",")
shared = next((i for i, (x, y) in enumerate(zip(t, o)) if x != y), min(len(t), len(o)))
ok = sum(kls) / len(kls) < 0.01 and top >= 0.9 * len(kls)
print(f"{name:20s} prompt {prompt[:24]:24s} KL mean {sum(kls)/len(kls):.2g} max {max(kls):.2g}  argmax {top}/{len(kls)}  "
      f"free-running greedy shared {shared}/{len(t)}  {'ok' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
  done
done
exit $fail
