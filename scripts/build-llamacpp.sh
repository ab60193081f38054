#!/usr/bin/env bash
# Builds llama.cpp's reference tools (llama-bench, llama-batched-bench, llama-completion, llama-quantize, llama-perplexity,
# llama-tokenize) from the PyPI sdist llama-cpp-python==0.3.36, which vendors llama.cpp, so it works with only a
# package registry. The build lives outside the repository (~10 min on 2 cores); prints the bin directory.
# ANCHOR_ISA=avx2 or avxvnni builds a second copy without AVX-512 (and without AVX-VNNI for avx2), as it would be
# built on a CPU of that class (see scripts/anchor-isa-flags.sh).
set -euo pipefail
SRC="$(bash "$(dirname "$0")/fetch-llamacpp.sh")"
BUILD="$SRC/build${ANCHOR_ISA:+-$ANCHOR_ISA}"
BIN="$BUILD/bin"
FLAGS=$(bash "$(dirname "$0")/anchor-isa-flags.sh")
TOOLS=(llama-bench llama-batched-bench llama-completion llama-quantize llama-perplexity llama-tokenize)
missing=()
for t in "${TOOLS[@]}"; do [ -x "$BIN/$t" ] || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
  command -v cmake >/dev/null && command -v ninja >/dev/null || pip install --quiet cmake ninja
  CFLAGS="$FLAGS" CXXFLAGS="$FLAGS" cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF >&2
  ninja -C "$BUILD" -j"$(nproc)" "${missing[@]}" >&2
fi
echo "$BIN"
