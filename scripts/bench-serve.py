"""Time to first token and decode speed under load from a running `bitnet serve` (or llama-server).

Usage: bench-serve.py BASE_URL CONCURRENCY PROMPT_WORDS MAX_TOKENS. Sends CONCURRENCY streaming completions at
once (distinct prompts of PROMPT_WORDS words, ignore_eos) and prints one JSON line: mean and max time to first
token, and the aggregate streamed tokens/s after the last first token.
"""

import json
import sys
import threading
import time
import urllib.request

base, n, words, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
results = [None] * n


def one(i):
    prompt = " ".join(f"word{(i * 7919 + j) % 1000}" for j in range(words))
    body = json.dumps(
        {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True, "ignore_eos": True}
    ).encode()
    request = urllib.request.Request(base + "/v1/completions", body, {"Content-Type": "application/json"})
    start = time.perf_counter()
    first, chunks = None, 0
    with urllib.request.urlopen(request) as response:
        for line in response:
            if line.startswith(b"data: {") and b'"text":""' not in line:
                chunks += 1
                first = first or time.perf_counter() - start
    results[i] = (first, time.perf_counter() - start, chunks)


threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
firsts = [r[0] for r in results]
decode_window = max(r[1] for r in results) - max(firsts)
tokens_after = sum(r[2] - 1 for r in results)
print(json.dumps({
    "concurrency": n, "prompt_words": words, "max_tokens": max_tokens,
    "ttft_mean_s": sum(firsts) / n, "ttft_max_s": max(firsts),
    "decode_tok_s_aggregate": tokens_after / decode_window if decode_window > 0 else None,
}))
