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
# On 2 cores: pretraining about 50 minutes, SFT 6, each evaluation 3, GRPO 5.
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
"$whale" eval --model sft/model -n 100 --max-tokens 512 -t "$threads" | tee eval-sft.txt

# GRPO on the four tasks (rule-based rewards), then the same evaluation
"$whale" grpo --init sft/model --out grpo --steps 20 --prompts 8 --group 8 --max-tokens 384 \
  --lr 5e-5 --min-lr 2e-5 --warmup 3 --save-every 10 --seed 3 -t "$threads"
"$whale" eval --model grpo/model -n 100 --max-tokens 512 -t "$threads" | tee eval-grpo.txt

# The model as committed: weights (float32), config and tokenizer, without training state
if [[ -n "${EXPORT:-}" ]]; then
  mkdir -p "$EXPORT"
  cp grpo/model/model.safetensors grpo/model/config.json grpo/model/tokenizer.json grpo/model/tokenizer_config.json "$EXPORT"/
fi
