#!/usr/bin/env bash
# The CPU kernel and attention tests (f32 and f16 caches) cross-compiled for AArch64 and run under qemu-user,
# whose default CPU has the dot-product extension: every NEON path (`neon`, `neondot`) is compared with the
# oracle and the scalar path on an x86-64 machine. Installs the Rust target, qemu-user and the cross linker when
# missing; says SKIPPED and exits 0 if they cannot be had (no package registry), like the GPU tests without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
skip() { echo "aarch64 kernel tests SKIPPED: $1"; exit 0; }

target=aarch64-unknown-linux-gnu
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >/dev/null 2>&1 \
  || skip "rustup cannot add $target"
if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
  { sudo_if_needed apt-get update -qq \
    && sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user gcc-aarch64-linux-gnu \
       libc6-dev-arm64-cross; } >/dev/null 2>&1 || skip "cannot install qemu-user and gcc-aarch64-linux-gnu"
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo clippy --target "$target" -p bitnet-kernels-cubecl --all-targets -- -D warnings
cargo test --target "$target" -p bitnet-kernels-cubecl --test it -- cpu_kernels attention
