#!/usr/bin/env bash
# The second command: build and pass every test.
#   1. Layering: no include runs up the stack (scripts/check_layers.py).
#   2. Release build, full test suite (unit, golden, CLI, real clients, HF tokenizers).
#   3. Sanitizer build (clang, AddressSanitizer + UndefinedBehaviorSanitizer, -O1, with
#      libFuzzer's coverage instrumentation), full test suite.
#   4. Each libFuzzer target of that same build for a short run, seeded from tests/fuzz_corpus.
# Prints each stage's wall and CPU time at the end.
# Set WHALE_TEST_QUICK=1 to run only steps 1 and 2.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

# Stage timings: wall seconds, and the CPU seconds (user + sys) of the processes each stage ran.
summary=()
# cutime + cstime of this shell (fields 16 and 17 of /proc/PID/stat, clock ticks): every
# finished child's CPU, its own finished children included.
cpu_now() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($14 + $15) / hz }' /proc/$$/stat; }
stage() {
  [[ -n "${stage_name:-}" ]] && summary+=("$(awk -v n="$stage_name" -v w=$((SECONDS - stage_t0)) -v a="$stage_cpu0" \
    -v b="$(cpu_now)" 'BEGIN { printf "%-40s %6ds wall %7.0fs CPU", n, w, b - a }')")
  stage_name=${1:-}
  stage_t0=$SECONDS
  stage_cpu0=$(cpu_now)
  [[ -n "$stage_name" ]] && echo "== $stage_name"
  return 0
}
report() {
  stage ""
  echo "== stage times ($(lscpu | sed -n 's/^Model name: *//p'), $jobs cores)"
  printf '%s\n' "${summary[@]}"
  printf '%-40s %6ds wall %7.0fs CPU\n' "total" "$SECONDS" "$(cpu_now)"
}
trap report EXIT

stage "dependencies"
scripts/deps.sh --test

stage "layering (no include runs up the stack)"
python3 scripts/check_layers.py

stage "release build"
# WHALE_TESTS=ON explicitly: scripts/run.sh may have configured build/ without tests.
scripts/build.sh build -DWHALE_TESTS=ON
ctest --test-dir build -N | tail -n 1

stage "release tests"
ctest --test-dir build --output-on-failure --no-tests=error -j "$jobs"
[[ "${WHALE_TEST_QUICK:-0}" == 1 ]] && exit 0

stage "sanitizer build (clang, ASan + UBSan)"
# One clang build serves the sanitizer suite and the fuzz targets (instrumented for libFuzzer's
# coverage as well), -O1: the usual sanitizer setting, several times faster than -O0. Line tables
# are all the debug information a sanitizer report needs (file:line in every frame), and
# cheaper to build than full -g.
CC=clang CXX=clang++ BUILD_TYPE=Debug scripts/build.sh build-san -DWHALE_SANITIZE=ON -DWHALE_FUZZ=ON \
  -DWHALE_TESTS=ON -DCMAKE_CXX_FLAGS_DEBUG="-gline-tables-only -O1"

stage "sanitizer tests"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-san --output-on-failure --no-tests=error -j "$jobs"

stage "fuzz smoke (libFuzzer)"
fuzz_one() {
  local fuzzer=$1 name corpus work
  name=$(basename "$fuzzer")
  corpus="tests/fuzz_corpus/${name#fuzz_}"
  work=$(mktemp -d)
  [[ -d "$corpus" ]] && cp -r "$corpus"/. "$work"/
  local out rc=0
  out=$("$fuzzer" -max_total_time="${WHALE_FUZZ_SECONDS:-20}" -rss_limit_mb=2048 -print_final_stats=0 "$work" 2>&1) || rc=$?
  echo "-- $name"
  echo "$out" | tail -n 2
  rm -rf "$work"
  return $rc
}
# libFuzzer runs one thread: the targets run $jobs at a time.
pids=()
for fuzzer in build-san/fuzz_*; do
  fuzz_one "$fuzzer" &
  pids+=($!)
  if (( ${#pids[@]} >= jobs )); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done
stage ""
echo "all tests passed"
