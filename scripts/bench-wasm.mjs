// The browser build's CPU path in Node.js (the same module the page runs, one thread): prefill and decode tok/s of a
// GGUF file, to set beside `bitnet bench -t 1` (BENCHMARKS.md). Needs bitnet-wasm/www/pkg and pkg-relaxed
// (scripts/build-web.sh); the relaxed-SIMD module needs a Node.js whose V8 runs it (22+; 20's gives wrong sums).
// Usage: node scripts/bench-wasm.mjs FILE [PROMPT_TOKENS=128] [DECODE_TOKENS=32] [pkg|pkg-relaxed]
import { readFileSync, openSync, readSync, fstatSync } from "node:fs";

const [file, pp = "128", tg = "32", pkg = "pkg"] = process.argv.slice(2);
const dir = new URL(`../bitnet-wasm/www/${pkg}/`, import.meta.url);
const { default: init, GgufBuffer, Model } = await import(new URL("bitnet_wasm.js", dir));
await init({ module_or_path: readFileSync(new URL("bitnet_wasm_bg.wasm", dir)) });
// stream the file in 64 MiB pieces, as the page does, so no whole copy lives outside WebAssembly memory
const fd = openSync(file, "r");
const size = fstatSync(fd).size;
const buffer = new GgufBuffer(file, size);
const piece = Buffer.alloc(64 << 20);
for (let n; (n = readSync(fd, piece)) > 0; ) buffer.push(piece.subarray(0, n));
let start = performance.now();
const model = await Model.load(buffer, "cpu", null);
const loadS = (performance.now() - start) / 1000;
// a prompt of `pp` tokens (and BOS where the model adds it): the ids of a long text, cut, and turned back into text
const ids = model.tokenize("The quick brown fox jumps over the lazy dog. ".repeat(Number(pp)), false).slice(0, Number(pp));
const prompt = model.detokenize(ids);
const g = model.generate(prompt, JSON.stringify({ maxTokens: Number(tg) + 1, stop: [] }));
start = performance.now();
let step = await g.next();
const prefillS = (performance.now() - start) / 1000;
const prompted = step.promptTokens;
const first = step.tokens;
start = performance.now();
while (step.piece !== undefined) step = await g.next();
const decodeS = (performance.now() - start) / 1000;
console.log(JSON.stringify({
  file, kernel: JSON.parse(model.info).kernel, load_s: +loadS.toFixed(2), prompt_tokens: prompted,
  prefill_tok_s: +(prompted / prefillS).toFixed(2), decode_tokens: step.tokens - first,
  decode_tok_s: +((step.tokens - first) / decodeS).toFixed(2), rss_mb: Math.round(process.memoryUsage().rss / 1e6),
}));
