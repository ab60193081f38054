#!/usr/bin/env bash
# Prefill and decode tokens/s, peak RSS and wall time of `bitnet bench` against llama.cpp's `llama-bench` on the
# same TQ2_0 file and, with I2S_MODEL set, against bitnet.cpp's `llama-bench` on the same I2_S file: same threads,
# lengths and depth, every engine with its default flags, alternating engines in each round so all see the same
# machine state. ISAS="avxvnni avx2" runs ours once per forced kernel path (BITNET_ISA) in each round, each
# against the same anchor. LLAMA_ARGS adds llama-bench arguments (e.g. "-ctk q8_0 -ctv q8_0 -fa 1" beside
# `-- --cache-type q8_0`). ANCHOR_ISA=avx2|avxvnni runs llama.cpp and bitnet.cpp built without AVX-512 (and
# AVX-VNNI), as on a CPU of that class, beside ISAS naming the same path: that CPU class emulated on this core
# (same caches and memory, so only the instruction set is emulated). Prints a markdown table with the ratios.
# Usage: [I2S_MODEL=FILE] [DEPTH=N] [ISAS="isa ..."] [ANCHOR_ISA=isa] [LLAMA_ARGS="..."]
#        scripts/bench-vs-llamacpp.sh MODEL.gguf
#        [THREADS] [PP] [TG] [ROUNDS] [-- extra bitnet args]
set -euo pipefail
MODEL=$1; THREADS=${2:-2}; PP=${3:-128}; TG=${4:-64}; ROUNDS=${5:-3}; DEPTH=${DEPTH:-0}
shift $(( $# < 5 ? $# : 5 )); [ "${1:-}" = "--" ] && shift
EXTRA=("$@")
read -r -a LLAMA_EXTRA <<< "${LLAMA_ARGS:-}"
HERE=$(cd "$(dirname "$0")/.." && pwd)
LLAMA_BENCH="$("$HERE/scripts/build-llamacpp.sh")/llama-bench"
BITNET="${BITNET:-${CARGO_TARGET_DIR:-$HERE/target}/release/bitnet}"
[ -x "$BITNET" ] || (cd "$HERE" && cargo build --release --bin bitnet >&2)
# ours-TYPE@ISA forces the kernel path; plain ours-TYPE takes the detected one.
read -r -a ISA_LIST <<< "${ISAS:-}"
ours() { if [ ${#ISA_LIST[@]} -eq 0 ]; then echo "$1:$2"; else for i in "${ISA_LIST[@]}"; do echo "$1@$i:$2"; done; fi; }
mapfile -t ENGINES < <(ours ours-tq2 "$MODEL"; echo "llama.cpp:$MODEL")
if [ -n "${I2S_MODEL:-}" ]; then
  FLAGS=$(bash "$HERE/scripts/anchor-isa-flags.sh")
  BITNET_CPP_BENCH=$(BITNET_CPP_DIR="$HOME/.cache/bitnet-cpp${ANCHOR_ISA:+-$ANCHOR_ISA}" CFLAGS="$FLAGS" \
    CXXFLAGS="$FLAGS" bash "$HERE/../shared/reference/build-bitnet-cpp.sh")
  mapfile -t -O ${#ENGINES[@]} ENGINES < <(ours ours-i2s "$I2S_MODEL"; echo "bitnet.cpp:$I2S_MODEL")
fi
OUT=$(mktemp -d)
for r in $(seq "$ROUNDS"); do
  for e in "${ENGINES[@]}"; do
    name=${e%%:*}; file=${e#*:}
    case $name in
      ours-*@*) cmd=(env "BITNET_ISA=${name#*@}" "$BITNET" bench -m "$file" -t "$THREADS" -p "$PP" -n "$TG" -d "$DEPTH" -r 1 --json "${EXTRA[@]}") ;;
      ours-*) cmd=("$BITNET" bench -m "$file" -t "$THREADS" -p "$PP" -n "$TG" -d "$DEPTH" -r 1 --json "${EXTRA[@]}") ;;
      llama.cpp) cmd=("$LLAMA_BENCH" -m "$file" -t "$THREADS" -p "$PP" -n "$TG" -d "$DEPTH" -r 1 -o jsonl "${LLAMA_EXTRA[@]}") ;;
      bitnet.cpp) cmd=("$BITNET_CPP_BENCH" -m "$file" -t "$THREADS" -p "$PP" -n "$TG" -r 1 -o jsonl) ;;
    esac
    # bitnet.cpp's January 2026 llama-bench has no -d: it runs at depth 0 only.
    [ "$name" = bitnet.cpp ] && [ "$DEPTH" != 0 ] && continue
    /usr/bin/time -f "%M %e" -o "$OUT/time" "${cmd[@]}" 2>/dev/null | grep '^{' > "$OUT/run"
    python3 -c 'import json,sys; rss,wall=open(sys.argv[2]).read().split()[-2:]
for l in open(sys.argv[1]): r=json.loads(l); r["rss_kb"]=int(rss); r["wall_s"]=float(wall); print(json.dumps(r))' \
      "$OUT/run" "$OUT/time" >> "$OUT/$name.jsonl"
  done
done
python3 - "$OUT" "$THREADS" "$PP" "$TG" "$DEPTH" "$ROUNDS" "${EXTRA[*]:-}" "${LLAMA_ARGS:-}" <<'PY'
import json, os, statistics, sys
out, threads, pp, tg, depth, rounds, extra, llama_args = sys.argv[1:]
def ms(v): return (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0) if v else (0.0, 0.0)
rows = {}
def engines():
    for name in ["ours-tq2", "llama.cpp", "ours-i2s", "bitnet.cpp"]:
        forced = sorted(f[:-6] for f in os.listdir(out) if f.startswith(name + "@") and f.endswith(".jsonl"))
        yield from forced or [name]
names = [n for n in engines() if os.path.exists(f"{out}/{n}.jsonl")]
for name in names:
    runs = [json.loads(l) for l in open(f"{out}/{name}.jsonl")]
    if name.startswith("ours"):
        p, t = ms([r["prefill_tok_s"] for r in runs]), ms([r["decode_tok_s"] for r in runs])
        label = f"bitnet-burn {name[5:8].upper()} ({runs[0]['backend']}, {runs[0]['isa']}, head {runs[0]['head']})"
        load = f"{statistics.mean(r['load_s'] for r in runs):.2f}"
    else:
        p = ms([r["avg_ts"] for r in runs if r["n_prompt"] > 0])
        t = ms([r["avg_ts"] for r in runs if r["n_gen"] > 0])
        label, load = f"{name} {runs[0].get('build_commit', '')}", "-"
    rss = max(r["rss_kb"] for r in runs) / 1e6
    wall = ms([r["wall_s"] for r in runs])
    rows[name] = (p, t)
    print_row = f"| {label} | {p[0]:.1f} ± {p[1]:.1f} | {t[0]:.1f} ± {t[1]:.1f} | {rss:.2f} GB | {load} | {wall[0]:.1f} |"
    rows[name + "-row"] = print_row
print(f"{threads} threads, pp{pp}, tg{tg}, depth {depth}, {rounds} alternating rounds, bitnet args: {extra or '-'}, "
      f"llama-bench args: {llama_args or '-'}, anchors built for: {os.environ.get('ANCHOR_ISA') or 'this CPU'}")
print(f"| engine | pp{pp} tok/s | tg{tg} tok/s | peak RSS | load s | wall s |\n|---|---|---|---|---|---|")
for name in names:
    print(rows[name + "-row"])
for ours in names:
    theirs = {"ours-tq2": "llama.cpp", "ours-i2s": "bitnet.cpp"}.get(ours.split("@")[0])
    if theirs in rows:
        (op, ot), (tp, tt) = rows[ours], rows[theirs]
        ratio = lambda a, b: f"{a / b:.2f}×" if b > 0 else "-"
        print(f"| ratio {ours} / {theirs} | {ratio(op[0], tp[0])} | {ratio(ot[0], tt[0])} | | | |")
PY
rm -rf "$OUT"
