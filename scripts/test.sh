#!/usr/bin/env bash
# The second command: build and pass every test.
#   1. Release build, full test suite (unit, golden, CLI).
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build, full test suite.
#   3. Each libFuzzer target for a short run (clang), seeded from tests/fuzz_corpus.
# Set WHALE_TEST_QUICK=1 to run only step 1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
jobs=$(nproc)

echo "== layering (no include runs up the stack)"
python3 scripts/check_layers.py

echo "== release build + tests"
# WHALE_TESTS=ON explicitly: scripts/run.sh may have configured build/ without tests.
scripts/build.sh build -DWHALE_TESTS=ON
ctest --test-dir build --output-on-failure --no-tests=error -j "$jobs"
[[ "${WHALE_TEST_QUICK:-0}" == 1 ]] && exit 0

echo "== ASan + UBSan build + tests"
BUILD_TYPE=Debug scripts/build.sh build-asan -DWHALE_SANITIZE=ON
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure --no-tests=error -j "$jobs"

echo "== fuzz smoke (libFuzzer)"
CC=clang CXX=clang++ BUILD_TYPE=Debug scripts/build.sh build-fuzz -DWHALE_FUZZ=ON -DWHALE_TESTS=OFF
for fuzzer in build-fuzz/fuzz_*; do
  name=$(basename "$fuzzer")
  corpus="tests/fuzz_corpus/${name#fuzz_}"
  work=$(mktemp -d)
  [[ -d "$corpus" ]] && cp -r "$corpus"/. "$work"/
  echo "-- $name"
  "$fuzzer" -max_total_time="${WHALE_FUZZ_SECONDS:-30}" -rss_limit_mb=2048 -print_final_stats=0 "$work" 2>&1 | tail -n 2
  rm -rf "$work"
done
echo "all tests passed"
