#!/usr/bin/env bash
# Prints the C/C++ flags that build a reference engine (llama.cpp, bitnet.cpp) for the CPU class ANCHOR_ISA names
# on a host that has more: `-march=native` stays, and GCC's explicit `-mno-*` flags win over it in any order.
# avx2: no AVX-512, no AVX-VNNI (AMD before Zen 4, Intel before Alder Lake); avxvnni: no AVX-512 (Intel's laptop
# and desktop chips since Alder Lake). Empty or unset: nothing (the host's own ISA).
set -euo pipefail
case "${ANCHOR_ISA:-}" in
  "") ;;
  avx2) echo "-mno-avx512f -mno-avxvnni" ;;
  avxvnni) echo "-mno-avx512f" ;;
  *) echo "ANCHOR_ISA must be avx2 or avxvnni, not '$ANCHOR_ISA'" >&2; exit 1 ;;
esac
