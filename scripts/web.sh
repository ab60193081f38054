#!/usr/bin/env bash
# Builds the browser package and serves the page on http://127.0.0.1:${PORT:-8000}/ (Ctrl-C stops it).
set -euo pipefail
www=$(bash "$(dirname "$0")/build-web.sh")
echo "open http://127.0.0.1:${PORT:-8000}/ (the shipped model; drop any GGUF file on the page to run it)"
exec python3 -m http.server "${PORT:-8000}" --bind 127.0.0.1 --directory "$www"
