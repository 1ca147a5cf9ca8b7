#!/usr/bin/env bash
# Reproduces whale's embedded default model (models/whale-r2-tiny) from scratch on a CPU:
#   1. data: verifiable reasoning tasks with step-by-step traces (whale data gen)
#   2. tokenizer: byte-level BPE learned from that text (whale tokenizer train)
#   3. pretraining on the traces as plain text
#   4. SFT in the DeepSeek V3.1 chat format, half the examples thinking on, half off
#   5. held-out evaluation, thinking on and off
#   6. GRPO with rule-based rewards, evaluated again
#   7. with EXPORT=DIR, the final weights, config and tokenizer copied to DIR
# Usage: recipes/whale-r2-tiny/recipe.sh [WORK_DIR]   (WHALE=path/to/whale, THREADS=n, EXPORT=dir)
# On 2 cores: pretraining about 50 minutes, SFT 6, each evaluation 3, GRPO 40.
# Every stage resumes where it stopped when run again (kill -9 loses at most one save interval).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
whale="${WHALE:-$root/build/whale}"
work="${1:-$root/build/recipe-whale-r2-tiny}"
threads="${THREADS:-0}"
mkdir -p "$work"
cd "$work"

[[ -f pretrain.jsonl ]] || "$whale" data gen --format text --count 40000 --seed 1 -o pretrain.jsonl
[[ -f sft.jsonl ]] || "$whale" data gen --format chat --count 20000 --seed 2 --thinking 0.5 -o sft.jsonl
[[ -f tokenizer/tokenizer.json ]] || "$whale" tokenizer train pretrain.jsonl sft.jsonl -o tokenizer --vocab-size 512

# Pretraining ran as 900 steps and was then continued on the same run directory to 2700 (the
# resumed run's cosine spans the new total); both commands are kept so the model reproduces.
"$whale" train --config "$here/config.json" --tokenizer tokenizer --data pretrain.jsonl --out pretrain \
  --steps 900 --batch 16 --seq-len 512 --lr 3e-3 --min-lr 3e-4 --warmup 100 \
  --save-every 100 --log-every 10 --seed 1 -t "$threads"
"$whale" train --config "$here/config.json" --tokenizer tokenizer --data pretrain.jsonl --out pretrain \
  --steps 2700 --batch 16 --seq-len 512 --lr 3e-3 --min-lr 3e-4 --warmup 100 \
  --save-every 100 --log-every 10 --seed 1 -t "$threads"
"$whale" train --init pretrain/model --data sft.jsonl --out sft \
  --steps 360 --batch 16 --seq-len 512 --lr 1e-3 --min-lr 1e-4 --warmup 30 \
  --save-every 100 --log-every 10 --seed 2 -t "$threads"
"$whale" eval --model sft/model -n 1000 --max-tokens 512 -t "$threads" | tee eval-sft.txt

# GRPO with rule-based rewards: 80 steps on addition and algebra (thinking on, k3 KL to the SFT
# model), then 100 more on addition alone (KL to the first GRPO model); then the same evaluation
"$whale" grpo --init sft/model --out grpo3 --tasks addition,algebra --steps 80 --prompts 16 --group 8 \
  --max-tokens 320 --temperature 0.7 --thinking 1.0 --lr 3e-5 --min-lr 1e-5 --warmup 5 --kl-beta 0.02 \
  --save-every 10 --seed 5 -t "$threads"
"$whale" grpo --init grpo3/model --out grpo4 --tasks addition --steps 100 --prompts 16 --group 8 \
  --max-tokens 320 --temperature 0.7 --thinking 1.0 --lr 3e-5 --min-lr 1e-5 --warmup 3 --kl-beta 0.02 \
  --save-every 10 --seed 6 -t "$threads"
"$whale" eval --model grpo4/model -n 1000 --max-tokens 512 -t "$threads" | tee eval-grpo.txt

# The model as committed: weights (float32), config and tokenizer, without training state
if [[ -n "${EXPORT:-}" ]]; then
  mkdir -p "$EXPORT"
  cp grpo4/model/model.safetensors grpo4/model/config.json grpo4/model/tokenizer.json grpo4/model/tokenizer_config.json "$EXPORT"/
fi
