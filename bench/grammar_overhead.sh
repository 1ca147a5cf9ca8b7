#!/usr/bin/env bash
# Cost of grammar-constrained decoding beside the decode step it rides on, in one run:
#   bench/grammar_overhead.sh [V2LITE.gguf] [TOKENIZER_DIR]
# 1. whale_grammar_bench on the DeepSeek-V3 vocabulary (128K tokens): per position of a valid
#    answer to an agent-style schema, the check of one drawn token and the whole-row mask;
# 2. whale bench: decode tokens/s of the V2-Lite-shaped model (the reference step);
# 3. the mask's median and maximum as a fraction of that decode step.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-/work/bench-models/v2lite-q4_k_m.gguf}
TOK=${2:-../shared/tokenizers/deepseek-v3}
cmake --build build --target whale whale_grammar_bench >/dev/null
lscpu | grep -E "Model name|^CPU\(s\)"
grammar=$(./build/whale_grammar_bench "$TOK")
echo "$grammar"
decode=$(./build/whale bench --model "$MODEL" -p 0 -n 64 -r 3 | grep '^| tg')
echo "$decode"
tps=$(echo "$decode" | awk -F'|' '{print $3}')
all=$(echo "$grammar" | grep '^| all')
med=$(echo "$all" | awk -F'|' '{print $5}')
max=$(echo "$all" | awk -F'|' '{print $6}')
awk -v t="$tps" -v m="$med" -v x="$max" 'BEGIN {
  step = 1e6 / t
  printf "decode step %.0f µs; whole-row mask median %.0f µs = %.2f%%, max %.0f µs = %.2f%% of it\n", step, m, 100 * m / step, x, 100 * x / step
}'
