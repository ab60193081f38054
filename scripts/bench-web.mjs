// The browser build's CPU path in headless Chromium, one thread against several (WebAssembly threads: the page is
// served cross-origin isolated, as scripts/web.sh serves it): prefill and decode tok/s of a GGUF file through the
// page's JS API (bitnet.js), the thread counts alternating in each round. Needs bitnet-wasm/www/pkg-relaxed and
// pkg-threads (scripts/build-web.sh) and playwright-core (npm ci in bitnet-wasm/tests).
// Usage: node scripts/bench-web.mjs FILE [PROMPT_TOKENS=128] [DECODE_TOKENS=32] [ROUNDS=2] [THREADS=1,N]
// (N: the machine's cores); prints one JSON line per run, then a markdown table of the means.
import { createServer } from "node:http";
import { createReadStream, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { extname, join, resolve } from "node:path";
import { chromium } from "../bitnet-wasm/tests/node_modules/playwright-core/index.mjs";

const [file, pp = "128", tg = "32", rounds = "2", threadList = `1,${availableParallelism()}`] = process.argv.slice(2);
const root = resolve(import.meta.dirname, "..", "bitnet-wasm", "www");
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
const server = createServer((req, res) => {
  const url = decodeURIComponent(new URL(req.url, "http://x").pathname);
  const path = url === "/bench.gguf" ? file : join(root, url);
  let size;
  try {
    size = statSync(path).isFile() ? statSync(path).size : undefined;
  } catch {}
  if (size === undefined) return res.writeHead(404).end("not found");
  res.writeHead(200, {
    "content-type": types[extname(path)] ?? "application/octet-stream", "content-length": size,
    "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp",
  });
  createReadStream(path).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run"],
});
const results = {};
try {
  for (let round = 0; round < Number(rounds); round++) {
    for (const threads of threadList.split(",").map(Number)) {
      const page = await browser.newPage();
      // the page itself loads the shipped model; the benchmark uses the API on its own model only
      await page.goto(`http://127.0.0.1:${server.address().port}/bitnet.js`);
      const run = await page.evaluate(async ([threads, pp, tg]) => {
        const { BitNet } = await import("./bitnet.js");
        let start = performance.now();
        const model = await BitNet.load("bench.gguf", { threads });
        const loadS = (performance.now() - start) / 1000;
        const words = "The quick brown fox jumps over the lazy dog. ".repeat(pp);
        const prompt = await model.detokenize((await model.tokenize(words, { bos: false })).slice(0, pp));
        for await (const _ of model.generate(prompt, { maxTokens: tg + 1, stop: [] }));
        const s = model.stats;
        model.close();
        return {
          threads: model.info.threads, kernel: model.info.kernel, load_s: +loadS.toFixed(2),
          prompt_tokens: s.promptTokens, prefill_tok_s: +((s.promptTokens * 1000) / s.prefillMs).toFixed(2),
          decode_tokens: s.tokens - 1, decode_tok_s: +s.decodeTokS.toFixed(2),
        };
      }, [threads, Number(pp), Number(tg)]);
      console.log(JSON.stringify({ round, ...run }));
      (results[threads] ??= []).push(run);
      await page.close();
    }
  }
} finally {
  await browser.close();
  server.close();
}
const mean = (runs, key) => runs.reduce((a, r) => a + r[key], 0) / runs.length;
console.log(`\n| threads (kernel) | pp${pp} tok/s | decode tok/s | load s |\n|---|---|---|---|`);
for (const runs of Object.values(results)) {
  const [prefill, decode] = [runs.map((r) => r.prefill_tok_s), runs.map((r) => r.decode_tok_s)];
  console.log(`| ${runs[0].threads} (${runs[0].kernel}) | ${prefill.join(", ")} | ${decode.join(", ")} | ` +
    `${mean(runs, "load_s").toFixed(2)} |`);
}
