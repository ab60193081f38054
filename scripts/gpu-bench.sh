#!/usr/bin/env bash
# The GPU check and timing, in two halves because the lent GPU machine has no Rust toolchain and no network:
#   scripts/gpu-bench.sh pack [cuda|wgpu]   here: builds the release binaries (bitnet, the GPU kernel and model
#                                           tests, the gpu_kernels bench) into .gpu/bundle.tar.xz (git-ignored)
#   scripts/gpu-bench.sh run                there (carry .gpu): runs the tests, times decode and prefill of the
#                                           synthetic 2B-4T model with both heads, and the kernels against the
#                                           device copy rate; logs go to $OUT (or .gpu/out), a table is printed last
# SHAPE (2b4t), PP (128) and TG (64) choose the model and lengths (SHAPE=tiny for a dry run on lavapipe), and
# BENCH_ARGS extra criterion arguments for the kernels (e.g. "--sample-size 10").
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
BUNDLE="$HERE/.gpu"

pack() {
  local feature=${1:-cuda}
  local target=${CARGO_TARGET_DIR:-$HERE/target}
  rm -rf "$BUNDLE/stage" && mkdir -p "$BUNDLE/stage/tests"
  cd "$HERE"
  cargo build --release --features "$feature" --bin bitnet
  cp "$target/release/bitnet" "$BUNDLE/stage/"
  # Test and bench executables, by name from cargo's JSON messages.
  {
    cargo test --release --features "$feature" -p bitnet-kernels-cubecl --test it --no-run --message-format=json
    cargo test --release --features "$feature" --test it --no-run --message-format=json
    cargo bench --features "$feature" --bench gpu_kernels --no-run --message-format=json
  } | python3 -c '
import json, pathlib, shutil, sys
stage = sys.argv[1]
# Each crate has one test binary, "it"; of the root one only the synthetic-model tests run on the GPU machine.
filters = {"bitnet-kernels-cubecl": "", "bitnet": "synthetic"}
for line in sys.stdin:
    m = json.loads(line)
    exe = m.get("executable") if m.get("reason") == "compiler-artifact" else None
    if exe and m["target"]["kind"] in (["test"], ["bench"]):
        name = m["target"]["name"]
        if name == "gpu_kernels":
            shutil.copy(exe, f"{stage}/{name}")
            continue
        crate_dir = pathlib.Path(m["manifest_path"]).parent
        crate = "bitnet" if crate_dir == pathlib.Path(sys.argv[2]) else crate_dir.name
        shutil.copy(exe, f"{stage}/tests/{crate}-{name}")
        pathlib.Path(f"{stage}/tests/{crate}-{name}.filter").write_text(filters.get(crate, ""))
' "$BUNDLE/stage" "$HERE"
  echo "$feature" > "$BUNDLE/stage/backend"
  strip "$BUNDLE"/stage/bitnet "$BUNDLE"/stage/gpu_kernels "$BUNDLE"/stage/tests/*-it
  tar -C "$BUNDLE/stage" -cJf "$BUNDLE/bundle.tar.xz" .
  rm -rf "$BUNDLE/stage"
  grep -qx '/.gpu/' "$HERE/.git/info/exclude" 2>/dev/null || echo '/.gpu/' >> "$HERE/.git/info/exclude"
  ls -l "$BUNDLE/bundle.tar.xz"
}

run() {
  local out=${OUT:-$BUNDLE/out} work
  work=$(mktemp -d)
  mkdir -p "$out"
  tar -C "$work" -xJf "$BUNDLE/bundle.tar.xz"
  local backend
  backend=$(cat "$work/backend")
  exec > >(tee "$out/gpu-bench.log") 2>&1
  nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi)"
  echo "== tests on $backend"
  for t in "$work"/tests/*-it; do
    # shellcheck disable=SC2046 # the filter is one word or none
    (cd "$HERE" && "$t" --test-threads=1 $(cat "$t.filter") 2>&1 | grep -E "^test |test result|SKIPPED|panicked") || echo "FAILED: $t"
  done
  echo "== synthetic 2B-4T model"
  "$work/bitnet" synth --shape "${SHAPE:-2b4t}" --type tq2_0 -s 1 -o "$work/model.gguf"
  for head in float int8; do
    "$work/bitnet" bench -m "$work/model.gguf" --backend "$backend" -p "${PP:-128}" -n "${TG:-64}" -r 3 \
      --head "$head" --json | tee -a "$out/model.jsonl"
  done
  echo "== kernels"
  # shellcheck disable=SC2086 # BENCH_ARGS is a list of arguments
  (cd "$work" && ./gpu_kernels --bench --warm-up-time 1 --measurement-time 3 ${BENCH_ARGS:-} 2>&1) \
    | tee "$out/kernels.txt"
  echo "== summary"
  python3 - "$out" <<'PY'
import json, re, sys
out = sys.argv[1]
for r in map(json.loads, open(f"{out}/model.jsonl")):
    print(f"{r['model']} {r['backend']} head {r.get('head', '?')}: prefill {r['prefill_tok_s']:.1f} tok/s, decode {r['decode_tok_s']:.1f} tok/s")
name = None
for line in open(f"{out}/kernels.txt"):
    if re.match(r"^\S+/\S+", line):
        name = line.split()[0]
    m = re.search(r"thrpt:\s+\[\S+ \S+ (\S+) (\S+)", line)
    if m and name:
        print(f"{name}: {m.group(1)} {m.group(2)}")
PY
}

case "${1:-}" in
  pack) pack "${2:-cuda}" ;;
  run) run ;;
  *) echo "usage: $0 pack [cuda|wgpu] | run" >&2; exit 2 ;;
esac
