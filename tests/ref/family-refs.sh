#!/usr/bin/env bash
# Regenerates tests/data/families/PRESET/ for each PRESET given (default: every family preset): llama.cpp's
# logits, tokens and perplexity for the synthetic file `bitnet synth --shape PRESET -s 7`, a tiny model on that
# model family's graph. Needs llama.cpp built by scripts/build-llamacpp.sh (BITNET_LLAMACPP_BIN) and a built
# `bitnet` (BITNET). ~1 minute per preset. See tests/data/families/README.md for what each file is.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BITNET_LLAMACPP_BIN:?set BITNET_LLAMACPP_BIN to scripts/build-llamacpp.sh output}
BITNET=${BITNET:-target/release/bitnet}
SRC=$(cd "$BIN/../.." && pwd)
PRESETS=("$@")
[ ${#PRESETS[@]} -gt 0 ] || PRESETS=(tiny-llama tiny-falcon-e tiny-1bitllm)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cc -O2 tests/ref/llama-logits.c -I"$SRC/include" -I"$SRC/ggml/include" -L"$BIN" -lllama -Wl,-rpath,"$BIN" \
  -o "$W/llama-logits"
TEXT=tests/data/shakespeare-heldout.txt
head -c 200 "$TEXT" >"$W/prefix.txt"
for P in "${PRESETS[@]}"; do
  OUT=tests/data/families/$P
  mkdir -p "$OUT"
  "$BITNET" synth --shape "$P" --type f32 -s 7 -o "$W/f32.gguf"
  "$BITNET" synth --shape "$P" --type tq2_0 -s 7 -o "$W/tq2_0.gguf"
  # llama.cpp computes F16 matrices with f16-rounded activations: its float reference runs on an all-F32 copy
  # (the synthetic F16 embedding and head hold f16-exact values, so the copy holds the same numbers), and its
  # Q8_K reference on a TQ2_0 file with an F16 embedding and head, as the synthetic TQ2_0 file has.
  "$BIN/llama-quantize" --allow-requantize --token-embedding-type f32 --output-tensor-type f32 \
    "$W/f32.gguf" "$W/all-f32.gguf" F32 >/dev/null 2>&1
  "$BIN/llama-quantize" --allow-requantize --token-embedding-type f16 --output-tensor-type f16 \
    "$W/all-f32.gguf" "$W/llama-tq2_0.gguf" TQ2_0 >/dev/null 2>&1
  # llama.cpp's tokens (BOS first) of the text's first 200 bytes: the first 64 are the logits' input.
  TOKENS=$("$BIN/llama-tokenize" -m "$W/all-f32.gguf" -f "$W/prefix.txt" --ids --log-disable 2>/dev/null |
    tr -d '[] ')
  FIRST=$(echo "$TOKENS" | cut -d, -f1-64)
  "$W/llama-logits" "$W/all-f32.gguf" "$FIRST" "$W/f32.bin" f32 2>/dev/null
  "$W/llama-logits" "$W/llama-tq2_0.gguf" "$FIRST" "$W/q8k.bin" f32 2>/dev/null
  "$W/llama-logits" "$W/all-f32.gguf" "$FIRST" "$W/q8kv.bin" q8_0 2>/dev/null
  PPL=$("$BIN/llama-perplexity" -m "$W/all-f32.gguf" -f "$TEXT" -c 128 -t 2 -fa off -ctk f32 -ctv f32 2>&1 |
    sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
  python3 - "$W" "$OUT" "$TOKENS" "$PPL" <<'PY'
import hashlib, json, sys
import numpy as np
w, out, tokens, ppl = sys.argv[1], sys.argv[2], [int(t) for t in sys.argv[3].split(",")], float(sys.argv[4])
for name in ["f32", "q8k", "q8kv"]:
    logits = np.fromfile(f"{w}/{name}.bin", dtype=np.float32).reshape(min(64, len(tokens)), -1)
    np.save(f"{out}/llamacpp-{name}.npy", logits)
sha = {t: hashlib.sha256(open(f"{w}/{t}.gguf", "rb").read()).hexdigest() for t in ["f32", "tq2_0"]}
refs = {"prefix_tokens": tokens, "perplexity_ctx128": ppl, "synth_sha256": sha}
json.dump(refs, open(f"{out}/refs.json", "w"), indent=1)
PY
  echo "wrote $OUT"
done
