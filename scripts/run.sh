#!/usr/bin/env bash
# The first command: install what is missing, build, and run the main job: a chat with the
# embedded default model (models/whale-r2-tiny, a small R2-architecture reasoning model
# trained by recipes/whale-r2-tiny). In a terminal the chat is interactive (/think on|off
# toggles thinking); otherwise whale answers one question with thinking on and then off.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build -DWHALE_TESTS=OFF
echo "whale is built: ./build/whale --help"
if [[ -t 0 && -t 1 ]]; then
  echo "Chatting with the default model (models/whale-r2-tiny). Try: What is 347 + 285?  /think on  /bye"
  exec ./build/whale run --think
fi
question="${WHALE_DEMO_QUESTION:-What is 347 + 285?}"
echo "Asking the default model (models/whale-r2-tiny): $question"
echo "-- thinking on:"
./build/whale run default "$question" --think --temperature 0
echo "-- thinking off:"
./build/whale run default "$question" --no-think --temperature 0
