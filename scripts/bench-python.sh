#!/usr/bin/env bash
# Speed through the Python package against the CLI on the same file and threads, alternating, ROUNDS times:
# `bitnet bench` and `bitnet_burn.Model.bench` (both greedy, -p prompt then -n generated tokens, 3 repetitions).
# Usage: scripts/bench-python.sh MODEL.gguf THREADS PROMPT GEN ROUNDS   (after `pip install ./bitnet-py`)
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
MODEL=$1 THREADS=$2 PP=$3 TG=$4 ROUNDS=$5
BITNET="${CARGO_TARGET_DIR:-$HERE/target}/release/bitnet"
[ -x "$BITNET" ] || (cd "$HERE" && cargo build --release --bin bitnet >&2)
lscpu | grep "Model name"; grep -q avx512_vnni /proc/cpuinfo && echo "AVX-512 VNNI" || echo "no AVX-512 VNNI"
for round in $(seq "$ROUNDS"); do
  echo "== round $round: bitnet bench (CLI)"
  "$BITNET" bench -m "$MODEL" -t "$THREADS" -p "$PP" -n "$TG" --json
  echo "== round $round: bitnet_burn.Model.bench (Python)"
  python3 -c "import json, sys; from bitnet_burn import Model
print(json.dumps(Model(sys.argv[1], threads=int(sys.argv[2])).bench(int(sys.argv[3]), int(sys.argv[4]))))" \
    "$MODEL" "$THREADS" "$PP" "$TG"
done
