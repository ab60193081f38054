#!/usr/bin/env python3
"""Time what `bitnet serve` saves by reusing prompts it has already run (standard library only).

    scripts/bench-prompt-reuse.py BITNET MODEL [WORDS]

1. The prompt cache: with one slot, conversation A, conversation B, then A's next turn, under `--cache-ram 2048`
   and `--cache-ram 0` (alternating servers); A's next turn should find A's tokens kept (`cached_tokens`).
2. `n` choices: `/v1/completions` with `n=4` over one prompt on `-np 4` (the prompt runs once, then is copied).
Prompts are WORDS (default 260) random words from a small list, so any tokenizer turns them into many tokens.
"""
import json
import random
import re
import subprocess
import sys
import threading
import time
import urllib.request

BIN, MODEL = sys.argv[1], sys.argv[2]
WORDS = int(sys.argv[3]) if len(sys.argv) > 3 else 260
VOCAB = "the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches".split()


def text(seed):
    r = random.Random(seed)
    return " ".join(r.choice(VOCAB) for _ in range(WORDS))


class Server:
    def __init__(self, *args):
        self.p = subprocess.Popen([BIN, "serve", "-m", MODEL, "--port", "0", "-t", "2", "--no-webui", *args],
                                  stderr=subprocess.PIPE, text=True)
        for line in self.p.stderr:
            m = re.match(r"listening on (\S+)", line)
            if m:
                self.base = m.group(1)
            if line.startswith("ready:"):
                break
        threading.Thread(target=lambda: [None for _ in self.p.stderr], daemon=True).start()

    def complete(self, **body):
        data = json.dumps({"temperature": 0, **body}).encode()
        request = urllib.request.Request(self.base + "/v1/completions", data, {"Content-Type": "application/json"})
        start = time.time()
        reply = json.load(urllib.request.urlopen(request))
        return time.time() - start, reply

    def stop(self):
        self.p.terminate()
        self.p.wait()


def show(what, seconds, reply):
    usage = reply["usage"]
    print(f"  {what}: {seconds:.2f} s, {usage['prompt_tokens']} prompt tokens, "
          f"{usage['prompt_tokens_details']['cached_tokens']} cached")


a, b = text(1), text(2)
for cache_ram in ["2048", "0", "2048", "0"]:
    print(f"-np 1 --cache-ram {cache_ram}")
    server = Server("-np", "1", "--cache-ram", cache_ram)
    seconds, first = server.complete(prompt=a, max_tokens=8)
    show("A", seconds, first)
    show("B", *server.complete(prompt=b, max_tokens=8))
    turn = a + first["choices"][0]["text"] + " and then the fox ran"
    show("A's next turn", *server.complete(prompt=turn, max_tokens=8))
    server.stop()

print("-np 4, n=4")
server = Server("-np", "4")
for seed in [3, 4]:
    show("4 choices", *server.complete(prompt=text(seed), max_tokens=16, n=4, temperature=0.8, seed=1))
server.stop()
