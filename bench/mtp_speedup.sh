#!/usr/bin/env bash
# MTP speculative decoding on a memory-bound model: the trained default model padded with
# inert zero weights (bench/pad_model.py: same tokens, same drafts, many more weight bytes
# per step), plain vs speculative greedy decoding at draft lengths 1-3, then the unpadded
# default model itself (overhead-bound: every step is tiny).
# Usage: bench/mtp_speedup.sh [WORK_DIR]   (WHALE=path/to/whale, THREADS=2)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
whale="${WHALE:-$root/build/whale}"
work="${1:-$root/build/bench-mtp}"
threads="${THREADS:-2}"
mkdir -p "$work"
padded="$work/whale-r2-tiny-padded"
[[ -f "$padded/model.safetensors" ]] ||
  python3 "$root/bench/pad_model.py" "$root/models/whale-r2-tiny" "$padded" --intermediate 16384 --shared-experts 128
for model in "$padded" "$root/models/whale-r2-tiny"; do
  for draft in 1 2 3; do
    "$whale" bench --model "$model" --spec mtp --draft "$draft" -t "$threads" -p 32 -n 128 -r 5
  done
done
