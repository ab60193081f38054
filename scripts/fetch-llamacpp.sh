#!/usr/bin/env bash
# Fetches the PyPI sdist llama-cpp-python==0.3.36 (it vendors llama.cpp: sources, the vocabulary test files in
# models/, the chat templates) into a cache outside the repository, checks its sha256, and
# prints the llama.cpp source directory.
# (PyPI's JSON API is not reachable from every mirror, so the file URL and its sha256 are pinned here.)
set -euo pipefail
VERSION=0.3.36
ROOT="${LLAMACPP_CACHE:-$HOME/.cache/llamacpp}"
SRC="$ROOT/llama_cpp_python-$VERSION/vendor/llama.cpp"
mkdir -p "$ROOT"
URL=https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-$VERSION.tar.gz
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
if [ ! -f "$SRC/models/ggml-vocab-llama-spm.gguf" ]; then
  python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$URL" "$ROOT/sdist.tar.gz"
  echo "$SHA256  $ROOT/sdist.tar.gz" | sha256sum -c --quiet >&2
  tar xzf "$ROOT/sdist.tar.gz" -C "$ROOT"
  rm "$ROOT/sdist.tar.gz"
fi
echo "$SRC"
