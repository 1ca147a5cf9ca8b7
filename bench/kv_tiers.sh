#!/usr/bin/env bash
# Time to first token of a long prompt cold and from each KV-cache tier (engine pool, RAM,
# disk after a restart), the disk read against the disk's sequential bandwidth, and
# concurrent sessions whose caches do not all fit in RAM.
# Usage: bench/kv_tiers.sh MODEL [PROMPT_TOKENS] [DIR]   (the blocks go in a fresh directory inside DIR; default /tmp)
set -euo pipefail
model=${1:?usage: bench/kv_tiers.sh MODEL [PROMPT_TOKENS] [DIR]}
tokens=${2:-16384}
dir=${3:-/tmp}
cd "$(dirname "$0")/.."
lscpu | grep -E "Model name|^CPU\(s\)"
df -h "$dir" | tail -n 1
./build/whale bench --model "$model" --kv-tiers "$dir" -p "$tokens" --sessions "${SESSIONS:-8}" \
  --session-tokens "${SESSION_TOKENS:-2048}"

