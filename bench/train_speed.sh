#!/usr/bin/env bash
# Training speed, whale vs PyTorch, same model, batch and thread count, run back to back.
#   bench/train_speed.sh [CONFIG] [BATCH] [SEQ] [STEPS] [THREADS]
# Needs PyPI torch + transformers (for HF's mHC modules) for the PyTorch side.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
whale="${WHALE:-$root/build/whale}"
config="${1:-$root/recipes/whale-r2-tiny/config.json}"
batch="${2:-16}" seq="${3:-128}" steps="${4:-5}" threads="${5:-$(nproc)}"
for round in 1 2 3; do  # alternate the engines; the machine is shared and noisy
  "$whale" train-bench --config "$config" --batch "$batch" --seq-len "$seq" --steps "$steps" -t "$threads"
  python3 "$root/bench/train_speed_torch.py" "$config" "$batch" "$seq" "$steps" "$threads"
done
