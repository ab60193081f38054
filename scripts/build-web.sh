#!/usr/bin/env bash
# Builds the browser package: bitnet-wasm for wasm32 (release, SIMD128, with WebGPU), then wasm-bindgen's JS glue into
# bitnet-wasm/www/pkg; again with relaxed SIMD into bitnet-wasm/www/pkg-relaxed; and with relaxed SIMD and WebAssembly
# threads (CPU only) into bitnet-wasm/www/pkg-threads. Installs the wasm32 target, the nightly toolchain's rust-src
# (threads need the standard library rebuilt with atomics: `-Z build-std`) and the matching wasm-bindgen-cli (into
# ~/.cache/bitnet-tools) when missing. Prints the www folder.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
tools="$HOME/.cache/bitnet-tools"
# wasm-bindgen's CLI must be the exact version of the crate the module links.
version=$(cargo metadata --format-version 1 --locked 2>/dev/null \
  | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "wasm-bindgen"))')
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown >&2
if ! "$tools/bin/wasm-bindgen" --version 2>/dev/null | grep -qx "wasm-bindgen $version"; then
  cargo install -q wasm-bindgen-cli --version "=$version" --root "$tools" >&2
fi
cargo build -q --release -p bitnet-wasm --features webgpu --target wasm32-unknown-unknown >&2
"$tools/bin/wasm-bindgen" --target web --out-dir bitnet-wasm/www/pkg \
  "$target_dir/wasm32-unknown-unknown/release/bitnet_wasm.wasm" >&2
# The same with relaxed SIMD, for the browsers that validate it (worker.js probes): its own target folder, since
# other flags would rebuild everything in the first.
RUSTFLAGS='-C target-feature=+simd128,+relaxed-simd --cfg getrandom_backend="wasm_js"' \
  cargo build -q --release -p bitnet-wasm --features webgpu --target wasm32-unknown-unknown \
  --target-dir "$target_dir/relaxed-simd" >&2
"$tools/bin/wasm-bindgen" --target web --out-dir bitnet-wasm/www/pkg-relaxed \
  "$target_dir/relaxed-simd/wasm32-unknown-unknown/release/bitnet_wasm.wasm" >&2
# With threads: shared memory (atomics, bulk memory) up to wasm32's 4 GiB with the thread-local storage exports
# wasm-bindgen's thread set-up calls, the standard library rebuilt to match.
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal >&2
rustup component list --toolchain nightly --installed | grep -q '^rust-src' \
  || rustup component add rust-src --toolchain nightly >&2
features=+simd128,+relaxed-simd,+atomics,+bulk-memory,+mutable-globals
link=(--shared-memory --import-memory --max-memory=4294967296 --export=__wasm_init_tls --export=__tls_size --export=__tls_align
  --export=__tls_base)
RUSTFLAGS="-C target-feature=$features ${link[*]/#/-C link-arg=} --cfg getrandom_backend=\"wasm_js\"" \
  cargo +nightly build -q --release -p bitnet-wasm --features threads --target wasm32-unknown-unknown \
  --target-dir "$target_dir/wasm-threads" -Z build-std=panic_abort,std >&2
"$tools/bin/wasm-bindgen" --target web --out-dir bitnet-wasm/www/pkg-threads \
  "$target_dir/wasm-threads/wasm32-unknown-unknown/release/bitnet_wasm.wasm" >&2
echo "$PWD/bitnet-wasm/www"
