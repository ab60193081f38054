#!/usr/bin/env bash
# Concurrent decode side by side: our batched engine (`bitnet bench --parallel`) and llama.cpp's
# llama-batched-bench on the same file and threads, alternating, ROUNDS times.
# Usage: scripts/bench-parallel.sh MODEL.gguf THREADS PROMPT GEN LEVELS ROUNDS   (e.g. ... 2 128 64 1,2,4,8 2)
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
MODEL=$1 THREADS=$2 PP=$3 TG=$4 LEVELS=$5 ROUNDS=$6
BIN="$("$HERE/scripts/build-llamacpp.sh")"
BITNET="${CARGO_TARGET_DIR:-$HERE/target}/release/bitnet"
[ -x "$BITNET" ] || (cd "$HERE" && cargo build --release --bin bitnet >&2)
MAX=$(echo "$LEVELS" | tr , '\n' | sort -n | tail -1)
lscpu | grep "Model name"; grep -q avx512_vnni /proc/cpuinfo && echo "AVX-512 VNNI" || echo "no AVX-512 VNNI"
for round in $(seq "$ROUNDS"); do
  echo "== round $round: bitnet-burn"
  "$BITNET" bench -m "$MODEL" -t "$THREADS" -p "$PP" -n "$TG" --parallel "$LEVELS" -r 1 --json
  echo "== round $round: llama.cpp (S_TG is the aggregate decode speed)"
  LD_LIBRARY_PATH="$BIN" "$BIN/llama-batched-bench" -m "$MODEL" -t "$THREADS" -c $((MAX * (PP + TG))) \
    -b 2048 -ub 512 -npp "$PP" -ntg "$TG" -npl "$LEVELS" 2>/dev/null | grep '^|'
done
