#!/usr/bin/env bash
# The GPU check and timing, in two halves because the lent GPU machine has no Rust toolchain and no network:
#   scripts/gpu-bench.sh pack [FEATURES]   here: builds the release binaries (bitnet, the kernel and model tests,
#                                          the gpu_kernels bench) for FEATURES (cuda, wgpu or cuda,wgpu; default
#                                          cuda) into .gpu/bundle.tar.xz, and ../shared/fixtures into
#                                          .gpu/fixtures.tar.xz (both git-ignored)
#   scripts/gpu-bench.sh run               there (carry .gpu, and .gl for wgpu: Vulkan's loader as Debian packages):
#                                          runs each backend's GPU tests (CI=true: no adapter fails; full logs in
#                                          $OUT, failures with their messages printed), times the
#                                          synthetic 2B-4T model with default flags, the float head, the f32 cache,
#                                          at depth 4000 and with 1/4/8 streams, the kernel launches of a decode
#                                          token (CubeCL's profiler), and the kernels against the device copy
#                                          rate (GEMVs, the head, one layer's decode attention at 512 and 4000
#                                          keys); logs go to $OUT (or .gpu/out), a table is printed last
# BACKENDS runs a subset of those packed (e.g. BACKENDS=cuda). SHAPE (2b4t), PP (128), TG (64) and DEPTH (4000)
# choose the model and lengths (SHAPE=tiny for a dry run on lavapipe), BENCH_ARGS adds criterion arguments for the
# kernels (e.g. "--sample-size 10"). Every part runs under a time limit and a failure is logged, not fatal, so one
# call always brings back what did run.
set -uo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
BUNDLE="$HERE/.gpu"

pack() {
  local features=${1:-cuda}
  local target=${CARGO_TARGET_DIR:-$HERE/target}
  set -e
  rm -rf "$BUNDLE/stage" && mkdir -p "$BUNDLE/stage/tests"
  cd "$HERE"
  cargo build --release --features "$features" --bin bitnet
  cp "$target/release/bitnet" "$BUNDLE/stage/"
  # Test and bench executables, by name from cargo's JSON messages.
  {
    cargo test --release --features "$features" -p bitnet-kernels-cubecl --test it --no-run --message-format=json
    cargo test --release --features "$features" --test it --no-run --message-format=json
    cargo bench --features "$features" --bench gpu_kernels --no-run --message-format=json
  } | python3 -c '
import json, pathlib, shutil, sys
stage = sys.argv[1]
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
' "$BUNDLE/stage" "$HERE"
  tr ',' ' ' <<<"$features" > "$BUNDLE/stage/backends"
  strip "$BUNDLE"/stage/bitnet "$BUNDLE"/stage/gpu_kernels "$BUNDLE"/stage/tests/*-it
  tar -C "$BUNDLE/stage" -cJf "$BUNDLE/bundle.tar.xz" .
  rm -rf "$BUNDLE/stage"
  local fixtures=${BITNET_FIXTURES:-$HERE/../shared/fixtures}
  if [ -d "$fixtures" ]; then
    tar -C "$fixtures/.." -cf - "$(basename "$fixtures")" | xz -T0 -6 > "$BUNDLE/fixtures.tar.xz"
  fi
  grep -qx '/.gpu/' "$HERE/.git/info/exclude" 2>/dev/null || echo '/.gpu/' >> "$HERE/.git/info/exclude"
  ls -l "$BUNDLE"/*.tar.xz
}

# `bitnet bench` with a label, appending its JSON lines to model.jsonl; a failure or time-out is logged.
bench() {
  local label=$1 limit=$2
  shift 2
  echo "-- $label: bitnet bench $*"
  timeout "$limit" "$WORK/bitnet" bench -m "$WORK/model.gguf" --json "$@" \
    | python3 -c 'import json,sys; [print(json.dumps({"label": sys.argv[1], **json.loads(l)})) for l in sys.stdin if l.startswith("{")]' "$label" \
    | tee -a "$OUT_DIR/model.jsonl" || echo "FAILED or timed out: $label"
}

# Launches and profiled time per decode token on backend $1: CubeCL's profiler (which waits for each kernel) over
# 12 decode tokens against 4, the last 8 tokens' kernels summed by name.
launches() {
  local b=$1 n
  for n in 4 12; do
    rm -f "$WORK/prof$n.log"
    CUBECL_DEBUG_LOG="$WORK/prof$n.log" CUBECL_DEBUG_OPTION=profile timeout 120 \
      "$WORK/bitnet" bench -m "$WORK/model.gguf" --backend "$b" -p 4 -n $n -r 1 >/dev/null 2>&1 \
      || echo "FAILED or timed out: profile of $n tokens"
  done
  python3 - "$WORK" <<'PY'
import collections, re, sys
def rows(path):
    out = []
    for line in open(path, errors="replace"):
        if line.startswith("| "):
            f = [x.strip() for x in line.split("|")]
            m = re.match(r"([\d.]+)\s*(ns|µs|us|ms|s)$", f[1])
            scale = {"ns": 1e-3, "µs": 1, "us": 1, "ms": 1e3, "s": 1e6}
            out.append((" ".join(f[2:-1]), float(m.group(1)) * scale[m.group(2)] if m else 0.0))
    return out
r4, r12 = rows(f"{sys.argv[1]}/prof4.log"), rows(f"{sys.argv[1]}/prof12.log")
per = (len(r12) - len(r4)) // 8
count, time = collections.Counter(), collections.Counter()
for name, us in r12[-8 * per:] if per > 0 else []:
    count[name] += 1
    time[name] += us
print(f"{per} launches and {sum(time.values()) / 8:.0f} µs profiled per decode token:")
for name in sorted(count, key=lambda k: -time[k]):
    print(f"{count[name] / 8:6.1f} launches {time[name] / 8:9.1f} µs  {name[:100]}")
PY
}

run() {
  OUT_DIR=${OUT:-$BUNDLE/out}
  WORK=$(mktemp -d)
  mkdir -p "$OUT_DIR"
  exec > >(tee "$OUT_DIR/gpu-bench.log") 2>&1
  tar -C "$WORK" -xJf "$BUNDLE/bundle.tar.xz"
  if [ -f "$BUNDLE/fixtures.tar.xz" ]; then
    tar -C "$WORK" -xJf "$BUNDLE/fixtures.tar.xz"
    export BITNET_FIXTURES="$WORK/fixtures"
  fi
  local backends
  backends=${BACKENDS:-$(cat "$WORK/backends")}
  if [[ " $backends " == *" wgpu "* ]] && ls "$HERE"/.gl/*.deb >/dev/null 2>&1; then
    for f in "$HERE"/.gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
  fi
  # cudarc loads libnvrtc at run time: put the toolkit's on the library path when ldconfig does not know it.
  local nvrtc
  nvrtc=$(ldconfig -p | grep -m1 -o '/.*libnvrtc\.so.*' || find /usr/local /opt -name 'libnvrtc.so*' 2>/dev/null | head -1)
  echo "libnvrtc: ${nvrtc:-none found}"
  [ -n "$nvrtc" ] && export LD_LIBRARY_PATH="$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi)"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv 2>/dev/null
  echo "== synthetic ${SHAPE:-2b4t} model"
  timeout 300 "$WORK/bitnet" synth --shape "${SHAPE:-2b4t}" --type tq2_0 -s 1 -o "$WORK/model.gguf" \
    || echo "FAILED: synth"
  # Backend by backend, the most telling part first, so that a call cut short still brings back the first one whole.
  local pp=${PP:-128} tg=${TG:-64} depth=${DEPTH:-4000} b t first=1
  for b in $backends; do
    echo "== tests on $b"
    for t in "$WORK"/tests/*-it; do
      # Tests read repository files from their crate's directory, which cargo gives them and this script must.
      local crate=$HERE
      [[ $t == *-kernels-cubecl-it ]] && crate=$HERE/bitnet-kernels-cubecl
      (cd "$crate" && CI=true CARGO_MANIFEST_DIR=$crate timeout 240 "$t" --test-threads=1 "$b" 2>&1 \
        | tee "$OUT_DIR/tests-$b-$(basename "$t").log" | grep -E -A1 "^test .*FAILED|test result|SKIPPED|panicked") \
        || echo "FAILED or timed out: $t"
    done
    bench "$b default" 120 --backend "$b" -p "$pp" -n "$tg" -r 3
    bench "$b head float" 120 --backend "$b" -p "$pp" -n "$tg" -r 3 --head float
    bench "$b cache f32" 120 --backend "$b" -p "$pp" -n "$tg" -r 3 --cache-type f32
    bench "$b depth f16" 180 --backend "$b" -p 64 -n 32 -r 2 -d "$depth"
    bench "$b depth f32" 180 --backend "$b" -p 64 -n 32 -r 2 -d "$depth" --cache-type f32
    bench "$b depth q8_0" 180 --backend "$b" -p 64 -n 32 -r 2 -d "$depth" --cache-type q8_0
    bench "$b streams" 180 --backend "$b" -p "$pp" -n "$tg" -r 1 --parallel 1,4,8
    echo "== launches per decode token on $b"
    launches "$b"
    if [ "$first" = 1 ]; then
      first=0
      echo "== kernels (on the first backend built: cuda when there)"
      # shellcheck disable=SC2086 # BENCH_ARGS is a list of arguments
      (cd "$WORK" && timeout 300 ./gpu_kernels --bench --warm-up-time 1 --measurement-time 3 ${BENCH_ARGS:-} 2>&1) \
        | tee "$OUT_DIR/kernels.txt"
    fi
  done
  echo "== summary"
  python3 - "$OUT_DIR" <<'PY'
import json, os, re, sys
out = sys.argv[1]
if os.path.exists(f"{out}/model.jsonl"):
    for r in map(json.loads, open(f"{out}/model.jsonl")):
        streams = f" x{r['parallel']}" if "parallel" in r else ""
        print(f"{r['label']}{streams} (head {r.get('head', '?')}, cache {r.get('cache', '?')}, depth {r.get('depth', 0)}):"
              f" pp {r['prefill_tok_s']:.1f}, tg {r['decode_tok_s']:.1f} tok/s, load {r.get('load_s', 0):.2f} s")
name = None
for line in open(f"{out}/kernels.txt") if os.path.exists(f"{out}/kernels.txt") else []:
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
  *) echo "usage: $0 pack [cuda|wgpu|cuda,wgpu] | run" >&2; exit 2 ;;
esac
