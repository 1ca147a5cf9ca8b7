#!/usr/bin/env bash
# Quality of quantized GGUF files against the float32 model they were made from, measured on a
# model that has learned something: random-weight models have nearly tied logits, where top-1
# agreement measures noise. Trains a small deepseek2-architecture model whose every matrix is at
# least 256 wide (so Q4_K and Q6_K blocks are used; only the split-out attn_k_b, 64 wide,
# falls back to Q5_0), writes it as F32,
# Q8_0, Q4_K_M and Q4_0 GGUF files with `whale quantize`, and compares the logits of each with the
# float32 Hugging Face checkpoint's on held-out text (KL divergence, top-1 agreement).
#
#   bench/quant_quality.sh [WORK_DIR]     STEPS (default 400), THREADS (default all), SEQS (16)
# On 2 cores (Zen 5): about 1.5 minutes in all with the defaults, 4.5 with STEPS=1200 SEQS=64.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
whale=${WHALE:-$here/build/whale}
work=${1:-$here/build/quant-quality}
steps=${STEPS:-400} threads=${THREADS:-0} seqs=${SEQS:-16}
mkdir -p "$work"
cd "$work"
[[ -f pretrain.jsonl ]] || "$whale" data gen --format text --count 20000 --seed 1 -o pretrain.jsonl
[[ -f heldout.jsonl ]] || "$whale" data gen --format text --split test --count "$seqs" --seed 7 -o heldout.jsonl
[[ -f tokenizer/tokenizer.json ]] || "$whale" tokenizer train pretrain.jsonl -o tokenizer --vocab-size 512 >/dev/null
"$whale" train --config "$here/bench/configs/deepseek2-quality-10m.json" --tokenizer tokenizer --data pretrain.jsonl \
  --out run --steps "$steps" --batch 16 --seq-len 256 --lr 3e-3 --min-lr 3e-4 --warmup 40 \
  --save-every 100 --log-every 50 --seed 1 -t "$threads" -q
for type in f32 q8_0 q4_k_m q4_0; do
  [[ -f model-$type.gguf ]] || "$whale" quantize run/model "model-$type.gguf" --type "$type" >/dev/null 2>&1
done
python3 "$here/bench/quant_quality.py" --whale "$whale" --reference run/model --text heldout.jsonl -t "$threads" \
  model-f32.gguf model-q8_0.gguf model-q4_k_m.gguf model-q4_0.gguf
