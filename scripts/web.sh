#!/usr/bin/env bash
# Builds the browser package and serves the page on http://127.0.0.1:${PORT:-8000}/ (Ctrl-C stops it).
set -euo pipefail
www=$(bash "$(dirname "$0")/build-web.sh")
echo "open http://127.0.0.1:${PORT:-8000}/ (the shipped model; drop any GGUF file on the page to run it)"
# Cross-origin isolated (COOP + COEP), so the page may share memory with workers: the CPU path's threads.
exec python3 - "$www" "${PORT:-8000}" <<'PY'
import functools, http.server, sys

class Isolated(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

handler = functools.partial(Isolated, directory=sys.argv[1])
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), handler).serve_forever()
PY
