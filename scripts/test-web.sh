#!/usr/bin/env bash
# The browser build's tests: the CPU kernels' SIMD128 path against the scalar oracle (WASI under Node.js), then the
# page and its JS API in Debian's headless Chromium against the CLI (BITNET_BIN, default the debug build).
# Installs what is missing: the wasm targets, wasm-bindgen-cli, chromium, playwright-core (npm, locked).
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
target_dir="${CARGO_TARGET_DIR:-target}"
export BITNET_BIN="${BITNET_BIN:-$target_dir/debug/bitnet}"

echo "== SIMD128 kernels against the scalar oracle (wasm32-wasip1 in Node.js)"
rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
export CARGO_TARGET_WASM32_WASIP1_RUNNER="node $PWD/scripts/wasi-run.mjs"
cargo clippy -q --target wasm32-unknown-unknown -p bitnet-wasm -p bitnet-kernels-cubecl --features bitnet-wasm/webgpu -- -D warnings
# the tests that need no second thread (WASI has none): every path against the oracle, the int8 head, extremes
cargo test -q --target wasm32-wasip1 -p bitnet-kernels-cubecl --test it -- \
  cpu_kernels::every_isa cpu_kernels::int8_head cpu_kernels::extreme_values

echo "== the page in headless Chromium"
if ! command -v chromium >/dev/null; then
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
bash scripts/build-web.sh >/dev/null
(cd bitnet-wasm/tests && npm ci --silent --no-audit --no-fund)
node --test bitnet-wasm/tests/browser.test.mjs
