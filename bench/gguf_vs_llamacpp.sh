#!/usr/bin/env bash
# whale vs llama.cpp on identical GGUF files, side by side, one run, same threads.
#
#   bench/gguf_vs_llamacpp.sh LLAMA_BIN_DIR [tiny] [v2lite] [v4flash]
#
# LLAMA_BIN_DIR holds llama.cpp's llama-bench, built by you from a snapshot outside this
# repository. For each shape the script writes a random-weight checkpoint (whale init, with
# DeepSeek-V3's tokenizer cut to the model's vocabulary), quantizes it with `whale quantize`
# to Q8_0 and Q4_K_M, and runs `llama-bench` and `whale bench` with -p $P -n $N -r $R -t $T
# (both warm up first), ROUNDS times alternately (default 1). llama.cpp runs twice per round: with
# its default load (mmap) and with `-lm none` (read into memory, as whale's default --load auto
# does when the file fits); the ratios are against the faster of the two. Prints one Markdown
# row per file: medians over the rounds (each engine's own figure per round: whale's median,
# llama.cpp's mean), and whether whale copied the file or mapped it.
#   WORK  where models go (default /work/bench-models; V2-Lite needs ~60 GB free)
#   TYPES  which files (default "q8_0 q4_k_m"; v4flash always "mxfp4_moe")
# v4flash is DeepSeek-V4-Flash's shape cut to 4 layers and 16 experts
# (bench/configs/deepseek-v4-flash-4l.json), written in V4's released FP8/FP4 layout (whale init
# --dtype fp8); its mxfp4_moe file is what llama.cpp's converter writes from that checkpoint
# (whale convert writes the same bytes: tests/gguf_model_test.cpp).
#   KEEP_BF16=1 keeps the BF16 checkpoints after quantizing
#   LLAMA_ARGS  extra llama-bench arguments (e.g. --no-warmup: at a large depth its warm-up is
#           one more full prefill of the context)
#   LM_NONE=0 skips llama.cpp's `-lm none` run (then both of its columns are the mmap run)
#   DEPTHS  context depths to measure at (default "0"): pp and tg after that many context tokens
#           (llama-bench -d; whale bench -d serves them from its prefix cache)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
llama=${1:?usage: $0 LLAMA_BIN_DIR [tiny] [v2lite]}
shift
shapes=${*:-tiny v2lite}
WORK=${WORK:-/work/bench-models} P=${P:-512} N=${N:-128} R=${R:-3} T=${T:-2}
ROUNDS=${ROUNDS:-1} DEPTHS=${DEPTHS:-0}
whale=$here/build/whale
tok=$here/../shared/tokenizers/deepseek-v3
mkdir -p "$WORK"

config_of() {
  case $1 in
    tiny) echo "$here/bench/configs/deepseek2-tiny-300m.json" ;;
    v2lite) echo "$here/configs/deepseek-v2-lite.json" ;;
    v4flash) echo "$here/bench/configs/deepseek-v4-flash-4l.json" ;;
    *) echo "unknown shape $1" >&2; exit 2 ;;
  esac
}

echo "| shape | type | depth | file | whale load | whale pp$P | llama.cpp pp$P mmap / none | ratio | whale tg$N | llama.cpp tg$N mmap / none | ratio | whale roofline |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for shape in $shapes; do
  cfg=$(config_of "$shape")
  bf16=$WORK/$shape-bf16
  dtype=bf16
  types=${TYPES:-"q8_0 q4_k_m"}
  if [ "$shape" = v4flash ]; then types=mxfp4_moe dtype=fp8; fi
  need=0
  for type in $types; do [ -f "$WORK/$shape-$type.gguf" ] || need=1; done
  if [ $need = 1 ]; then
    if [ ! -f "$bf16/config.json" ]; then
      "$whale" init --config "$cfg" --out "$bf16" --dtype $dtype >&2
      vocab=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['vocab_size'])" "$cfg")
      python3 "$here/bench/make_bench_tokenizer.py" "$tok" "$vocab" "$bf16" >&2
    fi
    for type in $types; do
      [ -f "$WORK/$shape-$type.gguf" ] || "$whale" quantize "$bf16" "$WORK/$shape-$type.gguf" --type "$type" >&2
    done
  fi
  [ "${KEEP_BF16:-0}" = 1 ] || rm -rf "$bf16"
  for type in $types; do
   for depth in $DEPTHS; do
    f=$WORK/$shape-$type.gguf
    # ROUNDS alternating runs of the two engines: this machine's memory bandwidth drifts by tens
    # of percent within minutes, so one run of each can compare two different machines.
    for round in $(seq "$ROUNDS"); do
      id=$shape-$type-d$depth-$round
      "$llama/llama-bench" -m "$f" -p "$P" -n "$N" -r "$R" -t "$T" -d "$depth" ${LLAMA_ARGS:-} -o json >"$WORK/llama-$id.json" 2>/dev/null
      if [ "${LM_NONE:-1}" = 0 ]; then cp "$WORK/llama-$id.json" "$WORK/llama_none-$id.json"
      else "$llama/llama-bench" -m "$f" -p "$P" -n "$N" -r "$R" -t "$T" -d "$depth" ${LLAMA_ARGS:-} -lm none -o json >"$WORK/llama_none-$id.json" 2>/dev/null; fi
      "$whale" bench --model "$f" -p "$P" -n "$N" -r "$R" -t "$T" -d "$depth" --json >"$WORK/whale-$id.json" 2>/dev/null
    done
    python3 - "$WORK" "$shape" "$type-d$depth" "$f" "$ROUNDS" "$depth" <<'PY'
import json, os, statistics, sys
work, shape, typ, path, rounds, depth = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
w = [json.load(open(f"{work}/whale-{shape}-{typ}-{k}.json")) for k in range(1, rounds + 1)]
def llama(kind, key):
    runs = [json.load(open(f"{work}/{kind}-{shape}-{typ}-{k}.json")) for k in range(1, rounds + 1)]
    return statistics.median(next(r["avg_ts"] for r in x if r[key] > 0) for x in runs)
lp, lpn = llama("llama", "n_prompt"), llama("llama_none", "n_prompt")
lg, lgn = llama("llama", "n_gen"), llama("llama_none", "n_gen")
wp = statistics.median(x["pp"]["median"] for x in w)
wg = statistics.median(x["tg"]["median"] for x in w)
roof = statistics.median(x["roofline_fraction"] for x in w)
loads = sorted({x["loaded"] for x in w})
size = os.path.getsize(path) / 2**30
print(f"| {shape} | {typ.rsplit('-d', 1)[0]} | {depth} | {size:.2f} GiB | {'/'.join(loads)} | {wp:.1f} | {lp:.1f} / {lpn:.1f} | {wp/max(lp, lpn):.2f}x "
      f"| {wg:.1f} | {lg:.1f} / {lgn:.1f} | {wg/max(lg, lgn):.2f}x | {100*roof:.0f}% |")
PY
   done
  done
done
