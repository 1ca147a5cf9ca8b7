#!/usr/bin/env bash
# The first command: install what is missing, build, and run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build -DWHALE_TESTS=OFF
model=tests/golden/v3
echo "whale is built: ./build/whale --help"
echo "Generating 16 tokens greedily with the tiny DeepSeek-V3-layout test checkpoint ($model):"
./build/whale generate --model "$model" --tokens 0,17,42,99 --max-tokens 16
