// The browser build in a real, headless Chromium: the page and its JS API against the native CLI (the reference: the
// same model, kernels compared with the scalar oracle, and llama.cpp elsewhere); and `bitnet serve`'s chat page against
// its own chat endpoint. Run by scripts/test-web.sh, which
// builds www/pkg, www/pkg-relaxed and www/pkg-threads first; needs BITNET_BIN (the CLI) and CHROMIUM (default /usr/bin/chromium).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createServer } from "node:http";
import { readFileSync, createReadStream, statSync } from "node:fs";
import { extname, join, resolve } from "node:path";
import { chromium } from "playwright-core";

const root = resolve(import.meta.dirname, "..", "www");
const modelPath = resolve(root, "models", "shakespeare-bitnet-i2_s.gguf");
const bin = process.env.BITNET_BIN ?? "bitnet";
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".gguf": "application/octet-stream" };

let server, browser, base;

before(async () => {
  // A static server over www/ (models/ is a link to the repository's models), cross-origin isolated as
  // scripts/web.sh's: the page may then share memory with workers (the CPU path's threads).
  server = createServer((req, res) => {
    const path = join(root, decodeURIComponent(new URL(req.url, "http://x").pathname));
    let size;
    try {
      size = statSync(path).isFile() ? statSync(path).size : undefined;
    } catch {}
    if (!path.startsWith(root) || size === undefined) return res.writeHead(404).end("not found");
    res.writeHead(200, {
      "content-type": types[extname(path)] ?? "application/octet-stream", "content-length": size,
      "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp",
    });
    createReadStream(path).pipe(res);
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  base = `http://127.0.0.1:${server.address().port}/`;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    // The machine has no network beyond loopback: no background services that would try to reach one. WebGPU is
    // behind a flag on Linux; without a GPU, Chromium's own SwiftShader (a Vulkan CPU driver) is its adapter.
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--no-first-run", "--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader", "--enable-unsafe-swiftshader"],
  });
});

after(async () => {
  await browser?.close();
  server?.close();
});

function cli(...args) {
  return execFileSync(bin, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
}

async function openPage(query = "") {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(base + "index.html" + query);
  return { page, errors };
}

/** Runs `action` and waits until the page has ended one more load or generation (`counter`); returns its state. */
async function ends(page, counter, action) {
  const count = () => page.evaluate((c) => Number(document.body.dataset[c] ?? 0), counter);
  const before = await count();
  await action();
  await page.waitForFunction(([c, n]) => Number(document.body.dataset[c] ?? 0) > n, [counter, before],
    { timeout: 120_000 });
  return page.evaluate(() => document.body.dataset.state);
}

/** Waits for the page's first load to end; returns its state. */
async function settled(page) {
  await page.waitForFunction(() => Number(document.body.dataset.loads ?? 0) > 0, null, { timeout: 120_000 });
  return page.evaluate(() => document.body.dataset.state);
}

/** Generates `tokens` greedy tokens of `prompt` through the page's controls; the text must be the CLI's. */
async function greedyEqualsCli(page, prompt, tokens) {
  await page.fill("#prompt", prompt);
  await page.fill("#max-tokens", String(tokens));
  await page.fill("#temperature", "0");
  assert.equal(await ends(page, "generations", () => page.click("#run")), "ready", await page.textContent("#error"));
  const cliArgs = ["run", "-m", modelPath, "-p", prompt, "-n", String(tokens), "--temp", "0", "--json"];
  assert.equal(await page.textContent("#output"), JSON.parse(cli(...cliArgs)).text);
}

// Chromium validates relaxed SIMD, so the page picks the module built with it; `?kernel=simd128` the plain one. The
// page is cross-origin isolated, so `?threads=2` runs the module built with threads on two Web Workers.
for (const [query, kernel, threads] of [["?threads=2", "relaxedsimd", "2 threads"],
  ["?threads=1", "relaxedsimd", "one thread"], ["?kernel=simd128&threads=1", "simd128", "one thread"]]) {
  test(`the page generates the CLI's greedy text from the shipped model (${kernel} kernel, ${threads})`, async () => {
    const { page, errors } = await openPage(query);
    assert.equal(await settled(page), "ready", await page.textContent("#error"));
    assert.match(await page.textContent("#status"),
      new RegExp(`Backend: cpu \\(WebAssembly, ${kernel} kernel, prompts by table lookup, ${threads}\\)`));
    await greedyEqualsCli(page, "ROMEO:\nWhat light through yonder window breaks?", 48);
    assert.match(await page.textContent("#status"), /48 generated at [\d.]+ tok\/s \(length\)/);
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test("WebGPU: the CubeCL kernels as WGSL in the page generate the CLI's greedy text", async (t) => {
  const { page, errors } = await openPage("?backend=webgpu");
  const adapter = await page.evaluate(async () => Boolean(await navigator.gpu?.requestAdapter()));
  if (!adapter) {
    assert.notEqual(process.env.CI, "true", "CI=true and headless Chromium gives no WebGPU adapter");
    return t.skip("headless Chromium gives no WebGPU adapter here");
  }
  assert.equal(await settled(page), "ready", await page.textContent("#error"));
  assert.match(await page.textContent("#status"), /Backend: webgpu \(WebGPU, CubeCL kernels as WGSL\)/);
  await greedyEqualsCli(page, "JULIET:\nO Romeo, Romeo!", 32);
  // again: the prompt but its last token is in the GPU cache the first run left, and the text is the same
  await greedyEqualsCli(page, "JULIET:\nO Romeo, Romeo!", 32);
  const [, prompt, cached] = (await page.textContent("#status")).match(/^(\d+) prompt tokens \((\d+) cached\)/);
  assert.equal(Number(cached), Number(prompt) - 1);
  assert.deepEqual(errors, []);
  await page.close();
});

test("the JS API: tokenize, detokenize, stop strings, sampling by seed, logit bias, a JSON schema, early stop", async () => {
  const { page, errors } = await openPage();
  assert.equal(await settled(page), "ready");
  const text = "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?";
  // a schema whose first property the model must name (JSON mode lets it write any key)
  const schema = { type: "object", properties: { mood: { enum: ["merry", "sad"] }, name: { type: "string" } },
    required: ["mood", "name"] };
  const grammar = 'root ::= ("yes" | "no") ", " [a-z]{1,12} "."';
  const got = await page.evaluate(async ({ text, schema, grammar }) => {
    const { BitNet } = await import("./bitnet.js");
    const m = await BitNet.load("models/shakespeare-bitnet-i2_s.gguf");
    const collect = async (opts) => {
      let out = "";
      for await (const piece of m.generate("ROMEO:", opts)) out += piece;
      return { out, stats: { ...m.stats } };
    };
    const ids = await m.tokenize(text);
    const roundTrip = await m.detokenize(await m.tokenize(text, { bos: false }));
    const greedy = await collect({ maxTokens: 24 });
    const stopAt = greedy.out.slice(6, 9);
    const stopped = await collect({ maxTokens: 24, stop: [stopAt] });
    const sampledA = await collect({ maxTokens: 24, temperature: 0.8, topK: 40, seed: 7 });
    const sampledB = await collect({ maxTokens: 24, temperature: 0.8, topK: 40, seed: 7 });
    const json = await collect({ maxTokens: 24, jsonObject: true });
    const shaped = await collect({ maxTokens: 60, jsonSchema: schema });
    const grammared = await collect({ maxTokens: 40, grammar });
    // +100 on one token outweighs every other logit: greedy writes it at every step
    const [thou] = await m.tokenize(" thou", { bos: false });
    const biased = await collect({ maxTokens: 8, logitBias: { [thou]: 100 } });
    const thouTimes8 = await m.detokenize(Array(8).fill(thou));
    // break out after one piece: the generation is freed and the next one starts clean
    for await (const piece of m.generate("ROMEO:", { maxTokens: 100 })) break;
    const after = await collect({ maxTokens: 24 });
    const errors = [];
    for (const bad of [() => m.generate("", {}), () => m.generate("x", { maxTokens: 4, topq: 1 }),
      () => m.detokenize([1e9]), () => m.generate("x", { logitBias: { 1000000: 1 } }),
      () => m.generate("x", { logitBias: { [thou]: 101 } }),
      () => m.generate("x", { jsonSchema: { type: "object", properties: { s: { type: "array", uniqueItems: true } } } }),
      () => m.generate("x", { grammar: 'root ::= "a" foo' })]) {
      try {
        const r = await bad();
        if (r?.next) await r.next();
        errors.push(null);
      } catch (e) {
        errors.push(e.message);
      }
    }
    m.close();
    return { ids, roundTrip, greedy, stopAt, stopped, sampledA, sampledB, json, shaped, grammared, biased,
      thouTimes8, after, errors, info: m.info };
  }, { text, schema, grammar });
  assert.deepEqual(got.ids, JSON.parse(cli("tokenize", "-m", modelPath, "-p", text, "--json")));
  assert.equal(got.roundTrip, text);
  assert.equal(got.greedy.stats.tokens, 24);
  assert.equal(got.greedy.stats.finishReason, "length");
  assert.equal(got.greedy.out, JSON.parse(cli("run", "-m", modelPath, "-p", "ROMEO:", "-n", "24", "--temp", "0", "--json")).text);
  assert.equal(got.stopped.stats.finishReason, "stop");
  assert.equal(got.stopped.out, got.greedy.out.slice(0, got.greedy.out.indexOf(got.stopAt)));
  assert.equal(got.sampledA.out, got.sampledB.out);
  assert.notEqual(got.sampledA.out, got.greedy.out);
  assert.equal(got.after.out, got.greedy.out);
  // the broken-off generation's cache held the prompt: all but its last token was not run again
  assert.equal(got.after.stats.cachedTokens, got.after.stats.promptTokens - 1);
  assert.equal(got.greedy.stats.cachedTokens, 0);
  // JSON mode: the CLI's constrained greedy text (the free one is verse), an object's start or a whole object
  const cliJson = JSON.parse(cli("run", "-m", modelPath, "-p", "ROMEO:", "-n", "24", "--temp", "0", "--json-object", "--json"));
  assert.equal(got.json.out, cliJson.text);
  assert.match(got.json.out, /^[ \n]?\{/);
  assert.doesNotMatch(got.greedy.out, /^[ \n]?\{/);
  assert.equal(got.json.stats.finishReason, cliJson.stop === "MaxTokens" ? "length" : "stop");
  if (cliJson.stop === "FormatComplete") JSON.parse(got.json.out);
  // a JSON schema: the CLI's greedy text under the same schema, which opens with its first property and an enum value
  const cliShaped = JSON.parse(cli("run", "-m", modelPath, "-p", "ROMEO:", "-n", "60", "--temp", "0", "--json-schema",
    JSON.stringify(schema), "--json"));
  assert.equal(got.shaped.out, cliShaped.text);
  assert.match(got.shaped.out, /^\s?\{\s*"mood"\s*:\s*"(merry|sad)"/);
  assert.doesNotMatch(got.json.out, /^\s?\{\s*"mood"/);
  assert.match(got.errors[0], /empty prompt/);
  assert.match(got.errors[1], /unknown field `topq`/);
  assert.match(got.errors[2], /token id 1000000000 is outside the vocabulary/);
  assert.match(got.errors[3], /logitBias: token id 1000000 is outside the vocabulary \(\d+ tokens\)/);
  assert.match(got.errors[4], /logitBias: 101 for token \d+ is outside \[-100, 100\]/);
  assert.match(got.errors[5], /jsonSchema: schema at #\/properties\/s: uniqueItems is not supported/);
  assert.match(got.errors[6], /grammar: the rule "foo" is used but not defined/);
  // a grammar: the CLI's greedy text under it, a sentence of it that ends where the grammar does
  const cliGrammar = JSON.parse(cli("run", "-m", modelPath, "-p", "ROMEO:", "-n", "40", "--temp", "0", "--grammar",
    grammar, "--json"));
  assert.equal(got.grammared.out, cliGrammar.text);
  assert.match(got.grammared.out, /^(yes|no), [a-z]{1,12}\.$/);
  assert.equal(got.grammared.stats.finishReason, "stop");
  assert.equal(got.biased.out, got.thouTimes8);
  assert.doesNotMatch(got.greedy.out, /^( thou){8}/);
  assert.equal(got.info.kernel, "relaxedsimd");
  assert.equal(got.info.prefillKernel, "table lookup");
  // by default one thread for a small model (the shipped one), even on a cross-origin isolated page
  assert.equal(got.info.threads, 1);
  assert.deepEqual(errors, []);
  await page.close();
});

test("bad files give a readable message in the page, never a hung tab", async () => {
  const model = readFileSync(modelPath);
  // the embedding's type id set to one no ggml release uses
  const unknownType = Buffer.from(model);
  const name = Buffer.from("token_embd.weight");
  const at = unknownType.indexOf(name);
  const dims = unknownType.readUInt32LE(at + name.length);
  unknownType.writeUInt32LE(200, at + name.length + 4 + 8 * dims);
  const cases = [
    { file: { name: "notes.gguf", mimeType: "text/plain", buffer: Buffer.from("not a model at all, just text\n".repeat(4)) },
      error: /^notes\.gguf: bad magic at offset 0: expected "GGUF"/ },
    { file: { name: "truncated.gguf", mimeType: "application/octet-stream", buffer: model.subarray(0, model.length >> 1) },
      error: /^truncated\.gguf: tensor "[^"]+": data \[\d+, \d+\) runs past the end of the file/ },
    { file: { name: "unknown-type.gguf", mimeType: "application/octet-stream", buffer: unknownType },
      error: /^unknown-type\.gguf: tensor "token_embd\.weight": unknown ggml type id 200/ },
    { url: "index.html", error: /^index\.html: bad magic at offset 0: expected "GGUF"/ },
    { url: "models/missing.gguf", error: /HTTP 404/ },
  ];
  for (const c of cases) {
    const { page, errors } = await openPage(c.url ? `?model=${encodeURIComponent(c.url)}` : "");
    let state = await settled(page);
    if (c.file) {
      assert.equal(state, "ready");
      state = await ends(page, "loads", () => page.setInputFiles("#file", c.file));
    }
    assert.equal(state, "error", c.url ?? c.file.name);
    assert.match(await page.textContent("#error"), c.error, c.url ?? c.file.name);
    // the page still works: the shipped model loads after the failure
    assert.equal(await ends(page, "loads", () => page.setInputFiles("#file", modelPath)), "ready");
    assert.deepEqual(errors, []);
    await page.close();
  }
});

/** Starts `bitnet serve` on a free loopback port; resolves to its base URL and the process once `/health` is 200. */
async function startServer(...args) {
  const proc = spawn(bin, ["serve", "-m", modelPath, "--port", "0", ...args], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  const url = await new Promise((ok, fail) => {
    proc.stderr.on("data", (d) => {
      log += d;
      // a whole line: a pipe may hand over the address before its port
      const m = log.match(/^listening on (http:\/\/\S+) .*\n/m);
      if (m) ok(m[1]);
    });
    proc.on("exit", (code) => fail(new Error(`bitnet serve exited (${code}): ${log}`)));
  });
  for (let i = 0; (await fetch(url + "/health").catch(() => ({}))).status !== 200; i++) {
    if (i === 600 || proc.exitCode !== null) {
      proc.kill();
      throw new Error(`${url}/health never answered 200: ${log}`);
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }
  return { url, proc };
}

test("a page on another origin uses bitnet serve: preflight, API key, streamed completion, cancelled stream", async () => {
  const { url, proc } = await startServer("--api-key", "page-key", "-np", "1");
  // any document of the static server's origin (here its 404 page) calls the server on another port
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(base + "another-origin");
  try {
    assert.notEqual(new URL(url).origin, new URL(base).origin);
    const got = await page.evaluate(async (api) => {
      const json = { "content-type": "application/json" };
      const auth = { ...json, authorization: "Bearer page-key" };
      const body = (extra) => JSON.stringify({ prompt: "ROMEO:", max_tokens: 24, temperature: 0, ...extra });
      /** The text of a streamed completion's SSE chunks; `cut` cancels the stream after its first chunk. */
      const streamed = async (cut) => {
        const res = await fetch(api + "/v1/completions", { method: "POST", headers: auth, body: body({ stream: true }) });
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let sse = "";
        for (let r = await reader.read(); !r.done; r = await reader.read()) {
          sse += r.value;
          if (cut) return reader.cancel();
        }
        return sse;
      };
      const models = await (await fetch(api + "/v1/models")).json();
      // JSON and an Authorization header make both requests preflighted
      const denied = await fetch(api + "/v1/completions", { method: "POST", headers: json, body: body() });
      const wrongMethod = await fetch(api + "/v1/completions", { headers: auth });
      await streamed(true);
      // one slot: this runs only if the cancelled stream gave it back
      const sse = await streamed(false);
      return { model: models.data[0].id, denied: [denied.status, await denied.json()],
        wrongMethod: [wrongMethod.status, await wrongMethod.json()], sse };
    }, url);
    assert.equal(got.model, "shakespeare-bitnet-i2_s");
    assert.equal(got.denied[0], 401);
    assert.match(got.denied[1].error.message, /missing API key/);
    assert.equal(got.wrongMethod[0], 405);
    assert.equal(got.wrongMethod[1].error.message, "/v1/completions does not take GET");
    const events = got.sse.split("\n\n").filter((e) => e).map((e) => e.replace(/^data: /, ""));
    assert.equal(events.at(-1), "[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(chunks.at(-1).choices[0].finish_reason, "length");
    const cliText = JSON.parse(cli("run", "-m", modelPath, "-p", "ROMEO:", "-n", "24", "--temp", "0", "--json")).text;
    assert.equal(chunks.map((c) => c.choices[0].text).join(""), cliText);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    proc.kill();
  }
});

test("chat: the page and the JS API reply as bitnet serve's chat endpoint, reuse the last turn's cache, call tools", async () => {
  const { url, proc } = await startServer("-np", "1");
  const { page, errors } = await openPage();
  try {
    assert.equal(await settled(page), "ready", await page.textContent("#error"));
    const asked = [{ role: "user", content: "Who art thou?" }];
    const tools = [{ type: "function", function: { name: "weather", parameters: { type: "object",
      properties: { city: { enum: ["Verona", "Mantua"] } }, required: ["city"], additionalProperties: false } } }];
    const got = await page.evaluate(async ({ asked, tools }) => {
      const { BitNet } = await import("./bitnet.js");
      const m = await BitNet.load("models/shakespeare-bitnet-i2_s.gguf");
      const turn = async (messages, options) => {
        const reply = m.chat(messages, options);
        const pieces = [];
        for await (const piece of reply) pieces.push(piece);
        return { pieces, message: reply.message, stats: { ...m.stats } };
      };
      const first = await turn(asked, { maxTokens: 24 });
      const again = [...asked, first.message, { role: "user", content: "Speak again." }];
      const second = await turn(again, { maxTokens: 24 });
      // this model, trained on verse, fills JSON with line breaks and indents: whitespace-only tokens are banned
      const runs = [" ", "\n", "\t", "\n "].flatMap((c) => Array.from({ length: 24 }, (_, k) => c.repeat(k + 1)));
      const ids = new Set((await Promise.all(runs.map((r) => m.tokenize(r, { bos: false })))).flat());
      const spaces = [];
      for (const id of ids) if (!(await m.detokenize([id])).trim()) spaces.push(id);
      const logitBias = Object.fromEntries(spaces.map((id) => [id, -100]));
      const called = await turn([{ role: "user", content: "Weather?" }],
        { maxTokens: 60, tools, toolChoice: "required", logitBias });
      // tool_choice auto: a reply that answers streams its answer (decoded from the JSON it is written in)
      let answered = null;
      for (let seed = 0; seed < 12 && !answered; seed++) {
        const r = await turn([{ role: "user", content: "Weather?" }],
          { maxTokens: 40, tools, logitBias, temperature: 0.8, seed });
        if (r.stats.finishReason !== "tool_calls" && (r.message.content ?? "").length >= 10) answered = r;
      }
      const errors = [];
      for (const bad of [() => m.chat([], {}), () => m.chat(null, {}), () => m.chat([{ role: "robot", content: "x" }]),
        () => m.chat(asked, { tools, toolChoice: { type: "function", function: { name: "time" } } }),
        () => m.generate("x", { tools })]) {
        try {
          for await (const piece of bad()) break;
          errors.push(null);
        } catch (e) {
          errors.push(e.message);
        }
      }
      m.close();
      return { first, second, called, answered, spaces, errors, template: m.info.chatTemplate };
    }, { asked, tools });
    const post = async (body) => (await fetch(url + "/v1/chat/completions", { method: "POST",
      headers: { "content-type": "application/json" }, body: JSON.stringify({ temperature: 0, ...body }) })).json();
    // the server's greedy replies to the same turns, in the same order (its one slot keeps the first turn's cache)
    const first = await post({ messages: asked, max_tokens: 24 });
    const again = [...asked, first.choices[0].message, { role: "user", content: "Speak again." }];
    const second = await post({ messages: again, max_tokens: 24 });
    const logit_bias = Object.fromEntries(got.spaces.map((id) => [id, -100]));
    const called = await post({ messages: [{ role: "user", content: "Weather?" }], max_tokens: 60, tools,
      tool_choice: "required", logit_bias });
    assert.equal(got.template, "built-in BitNet format");
    for (const [page, server] of [[got.first, first], [got.second, second]]) {
      assert.equal(page.message.content, server.choices[0].message.content);
      assert.equal(page.pieces.join(""), page.message.content);
      assert.equal(page.stats.finishReason, server.choices[0].finish_reason);
      assert.equal(page.stats.promptTokens, server.usage.prompt_tokens);
      assert.equal(page.stats.cachedTokens, server.usage.prompt_tokens_details.cached_tokens);
    }
    assert.equal(got.first.stats.cachedTokens, 0);
    // the second turn ran only what follows the start it shares with the first turn's prompt and reply (less where
    // the tokens at the boundary merge differently, the same count as the server's)
    assert.ok(got.second.stats.cachedTokens > 0, JSON.stringify(got.second.stats));
    assert.equal(got.called.stats.finishReason, "tool_calls");
    assert.deepEqual(got.called.pieces, []);
    const [call] = got.called.message.tool_calls;
    assert.deepEqual(got.called.message.tool_calls.map((c) => c.function),
      called.choices[0].message.tool_calls.map((c) => c.function));
    assert.equal(call.type, "function");
    assert.match(call.id, /^call_\d+_0$/);
    assert.equal(call.function.name, "weather");
    assert.ok(["Verona", "Mantua"].includes(JSON.parse(call.function.arguments).city), call.function.arguments);
    assert.ok(got.answered, "no seed answered in text: the streamed answer went untested");
    assert.equal(got.answered.pieces.join(""), got.answered.message.content);
    assert.ok(got.answered.pieces.length > 2, JSON.stringify(got.answered.pieces));
    assert.doesNotMatch(got.answered.message.content, /^\s*\{/);
    assert.match(got.errors[0], /messages: at least one message is needed/);
    assert.match(got.errors[1], /messages: must be a list of messages/);
    assert.match(got.errors[2], /messages\[0\]\.role: "robot" is not one of/);
    assert.match(got.errors[3], /tool_choice: no tool is named "time"/);
    assert.match(got.errors[4], /tools: only a chat calls tools/);

    // the page's chat mode: the same greedy reply, and a second turn that runs only its new tokens
    await page.check("#chat");
    await page.fill("#prompt", asked[0].content);
    await page.fill("#max-tokens", "24");
    await page.fill("#temperature", "0");
    assert.equal(await ends(page, "generations", () => page.click("#run")), "ready", await page.textContent("#error"));
    assert.equal(await page.textContent("#output"), first.choices[0].message.content);
    assert.equal(await page.inputValue("#prompt"), "");
    await page.fill("#prompt", "Speak again.");
    assert.equal(await ends(page, "generations", () => page.click("#run")), "ready", await page.textContent("#error"));
    assert.equal(await page.textContent("#output"), second.choices[0].message.content);
    assert.match(await page.textContent("#status"), new RegExp(`\\(${got.second.stats.cachedTokens} cached\\)`));
    assert.equal(await page.textContent("#conversation"),
      `You: ${asked[0].content}Assistant: ${first.choices[0].message.content}You: Speak again.`);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    proc.kill();
  }
});

/** Sends `text` from the chat page of `bitnet serve` (Enter in the box) and waits for the reply to end. */
async function say(page, text) {
  const count = () => page.evaluate(() => Number(document.body.dataset.replies ?? 0));
  const before = await count();
  await page.fill("#input", text);
  await page.press("#input", "Enter");
  await page.waitForFunction((n) => Number(document.body.dataset.replies ?? 0) > n, before, { timeout: 120_000 });
}

/** The page's messages: role, text and note. */
const shown = (page) => page.$$eval(".message", (all) => all.map((m) => ({ role: m.classList[1],
  text: m.querySelector(".text").textContent, note: m.querySelector(".note").textContent })));

test("bitnet serve's chat page: the API's greedy replies streamed, cached turns, the API key, Stop frees the slot, kept on reload, conversations", async () => {
  const { url, proc } = await startServer("--api-key", "page-key", "-np", "1", "--metrics");
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const key = { "content-type": "application/json", authorization: "Bearer page-key" };
  const post = async (body) => (await fetch(url + "/v1/chat/completions", { method: "POST", headers: key,
    body: JSON.stringify({ temperature: 0, max_tokens: 24, ...body }) })).json();
  const busy = async () => Number((await (await fetch(url + "/metrics", { headers: key })).text())
    .match(/^bitnet_slots_busy (\d+)$/m)[1]);
  try {
    await page.goto(url + "/");
    await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 60_000 });
    assert.equal(await page.textContent("#model"), "shakespeare-bitnet-i2_s");
    await page.click("#settings summary");
    await page.fill("#temperature", "0");
    await page.fill("#max-tokens", "24");
    // no key: the server's 401 is shown, the message goes back to the box
    await say(page, "Who art thou?");
    assert.match(await page.textContent("#error"), /missing API key.*enter it in Settings/);
    assert.equal(await page.inputValue("#input"), "Who art thou?");
    assert.deepEqual(await shown(page), []);
    await page.fill("#api-key", "page-key");
    await say(page, "Who art thou?");
    await say(page, "Speak again.");
    const page2 = await shown(page);

    // the server's greedy replies to the same turns, in the same order (its one slot holds the last turn)
    const first = await post({ messages: [{ role: "user", content: "Who art thou?" }] });
    const again = [{ role: "user", content: "Who art thou?" }, first.choices[0].message,
      { role: "user", content: "Speak again." }];
    const second = await post({ messages: again });
    assert.deepEqual(page2.map((m) => [m.role, m.text]), [["user", "Who art thou?"],
      ["assistant", first.choices[0].message.content], ["user", "Speak again."],
      ["assistant", second.choices[0].message.content]]);
    // (the server's second request finds the page's conversation in its prompt cache, more of it than the page's
    // turn found in the slot: a reply's text need not tokenize as it was generated after the template's prefix)
    const note2 = new RegExp(`^24 tokens at [\\d.]+ tok/s · prompt ${second.usage.prompt_tokens} ` +
      `tokens \\((\\d+) cached\\) in [\\d.]+ s · cut at the token limit$`);
    assert.match(page2[3].note, note2);
    assert.ok(Number(page2[3].note.match(note2)[1]) > 0, page2[3].note);

    // Regenerate: the last reply written again (greedy: the same), not added
    const replies = () => page.evaluate(() => Number(document.body.dataset.replies));
    const before = await replies();
    await page.click("#retry");
    await page.waitForFunction((n) => Number(document.body.dataset.replies) > n, before);
    assert.deepEqual((await shown(page)).map((m) => m.text), page2.map((m) => m.text));

    // Stop after the first words: the reply so far is kept, and the server gives the slot back at once
    await page.fill("#max-tokens", "400");
    await page.fill("#input", "Tell me a long tale.");
    await page.press("#input", "Enter");
    await page.waitForFunction(() => document.querySelector(".message.assistant:last-child .text")?.textContent);
    assert.equal(await busy(), 1);
    await page.click("#send");
    await page.waitForFunction(() => document.body.dataset.state === "ready");
    const stopped = (await shown(page)).at(-1);
    assert.equal(stopped.note, "stopped");
    assert.ok(stopped.text.length > 0);
    for (let i = 0; await busy() !== 0; i++) {
      assert.ok(i < 50, "the stopped reply's slot was not given back within 5 s");
      await new Promise((ok) => setTimeout(ok, 100));
    }

    // a reload shows the same conversation and settings; New chat clears it
    const kept = await shown(page);
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.state === "ready");
    assert.deepEqual(await shown(page), kept);
    assert.equal(await page.inputValue("#temperature"), "0");
    assert.equal(await page.inputValue("#api-key"), "page-key");

    // a second conversation, then the first again: its next turn is found in the server's prompt cache (the one
    // slot held the other); the conversation used last is listed first; Delete forgets one
    const options = () => page.$$eval("#chats option", (all) => all.map((o) => o.textContent));
    await page.click("#new-chat");
    assert.deepEqual(await shown(page), []);
    await say(page, "Good morrow.");
    assert.deepEqual(await options(), ["Good morrow.", "Who art thou?"]);
    await page.selectOption("#chats", { index: 1 });
    assert.deepEqual(await shown(page), kept);
    await say(page, "And then?");
    const { note } = (await shown(page)).at(-1);
    const [, prompt, found] = note.match(/prompt (\d+) tokens \((\d+) cached\)/).map(Number);
    // at least the turns before the stopped reply (whose text need not tokenize as it was generated)
    assert.ok(found >= second.usage.prompt_tokens && found < prompt, note);
    assert.deepEqual(await options(), ["Who art thou?", "Good morrow."]);
    await page.click("#delete-chat");
    assert.equal((await shown(page))[0].text, "Good morrow.");
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.state === "ready");
    assert.deepEqual(await options(), ["Good morrow."]);
    await page.click("#new-chat");
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.state === "ready");
    assert.deepEqual(await shown(page), []);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    proc.kill();
  }
});
