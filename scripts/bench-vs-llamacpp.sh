#!/usr/bin/env bash
# Prefill and decode tokens/s of `bitnet bench` and llama.cpp's `llama-bench` on the same GGUF file, same
# threads and lengths, alternating engines in one run so both see the same machine state; prints a table with
# the ratio. Usage: scripts/bench-vs-llamacpp.sh MODEL.gguf [THREADS] [PP] [TG] [ROUNDS] [-- extra bitnet args]
set -euo pipefail
MODEL=$1; THREADS=${2:-2}; PP=${3:-128}; TG=${4:-64}; ROUNDS=${5:-3}
shift $(( $# < 5 ? $# : 5 )); [ "${1:-}" = "--" ] && shift
EXTRA=("$@")
HERE=$(cd "$(dirname "$0")/.." && pwd)
LLAMA_BIN=$("$HERE/scripts/build-llamacpp.sh")
BITNET="${BITNET:-${CARGO_TARGET_DIR:-$HERE/target}/release/bitnet}"
[ -x "$BITNET" ] || (cd "$HERE" && cargo build --release --bin bitnet >&2)
OUT=$(mktemp -d)
for r in $(seq "$ROUNDS"); do
  "$BITNET" bench -m "$MODEL" -t "$THREADS" -p "$PP" -n "$TG" -r 1 --json "${EXTRA[@]}" >> "$OUT/ours.jsonl"
  "$LLAMA_BIN/llama-bench" -m "$MODEL" -t "$THREADS" -p "$PP" -n "$TG" -r 1 -o jsonl >> "$OUT/llama.jsonl" 2>/dev/null
done
python3 - "$OUT" "$MODEL" "$THREADS" "$PP" "$TG" "${EXTRA[*]:-}" <<'PY'
import json, statistics, sys
out, model, threads, pp, tg, extra = sys.argv[1:]
ours = [json.loads(l) for l in open(f"{out}/ours.jsonl")]
llama = [json.loads(l) for l in open(f"{out}/llama.jsonl")]
def ms(v): return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)
o_pp, o_tg = ms([r["prefill_tok_s"] for r in ours]), ms([r["decode_tok_s"] for r in ours])
l_pp = ms([r["avg_ts"] for r in llama if r["n_prompt"] > 0])
l_tg = ms([r["avg_ts"] for r in llama if r["n_gen"] > 0])
print(f"model {model}, {threads} threads, {len(ours)} alternating rounds, bitnet args: {extra or '-'}")
print(f"| engine | pp{pp} tok/s | tg{tg} tok/s |\n|---|---|---|")
print(f"| bitnet-burn ({ours[0]['backend']}, head {ours[0].get('head', '?')}) | {o_pp[0]:.1f} ± {o_pp[1]:.1f} | {o_tg[0]:.1f} ± {o_tg[1]:.1f} |")
print(f"| llama.cpp {llama[0].get('build_commit', '')} | {l_pp[0]:.1f} ± {l_pp[1]:.1f} | {l_tg[0]:.1f} ± {l_tg[1]:.1f} |")
print(f"| ratio | {o_pp[0] / l_pp[0]:.2f}× | {o_tg[0] / l_tg[0]:.2f}× |")
PY
rm -rf "$OUT"
