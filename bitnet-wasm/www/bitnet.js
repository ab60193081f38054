// BitNet b1.58 in the browser: `const model = await BitNet.load(urlOrFileOrBytes, {onProgress})`, then
// `for await (const piece of model.generate(prompt, {maxTokens, temperature, topK, topP, minP, repeatPenalty, seed,
// stop, jsonObject, jsonSchema, grammar, logitBias}))`, or a chat: `const reply = model.chat(messages, {...options, tools,
// toolChoice, parallelToolCalls}); for await (const piece of reply) ...; messages.push(reply.message)`. The model
// runs in a worker (worker.js): on the CPU (WebAssembly with the SIMD128 ternary kernel) or on WebGPU (the CubeCL
// kernels compiled to WGSL).

/** The smallest file the CPU path runs on several threads by default (see `BitNet.load`). */
const THREADED_BYTES = 16e6;

/** The size of a model source in bytes; a URL's from a HEAD request (Infinity when the server does not say). */
async function byteSize(source) {
  if (source instanceof Blob) return source.size;
  if (typeof source !== "string") return source.byteLength;
  const response = await fetch(source, { method: "HEAD" }).catch(() => null);
  return Number(response?.headers.get("content-length")) || Infinity;
}

export class BitNet {
  #worker;
  #pending = new Map();
  #nextId = 1;
  #dead = null;

  /** The model's shape and what runs it: architecture, family, layers, hidden, vocab, context, backend, kernel. */
  info = null;
  /**
   * Counts and times of the last generation: promptTokens, cachedTokens (of those, how many the previous
   * generation's cache held, not run again), tokens, prefillMs, decodeMs, decodeTokS, finishReason.
   */
  stats = null;

  constructor(worker) {
    this.#worker = worker;
    worker.onmessage = ({ data }) => {
      const call = this.#pending.get(data.id);
      if (!call) return;
      if ("progress" in data) return call.onProgress?.(data.progress);
      this.#pending.delete(data.id);
      if ("error" in data) {
        if (data.fatal) this.#dead = data.error;
        call.reject(new Error(data.error));
      } else call.resolve(data.result);
    };
    // The worker's script failed to start or died: every waiting call fails with the reason.
    worker.onerror = (event) => {
      event.preventDefault?.();
      this.#dead = event.message || "the engine's worker failed to start";
      for (const call of this.#pending.values()) call.reject(new Error(this.#dead));
      this.#pending.clear();
    };
  }

  /**
   * Loads a GGUF model from a URL, a File/Blob or an ArrayBuffer/Uint8Array. `backend`: "cpu" (WebAssembly
   * SIMD) or "webgpu". `kernel`: "auto" (relaxed SIMD where the browser has it) or "simd128" (never relaxed).
   * `threads`: the CPU kernels' threads. By default one per core for files of 16 MB and more where the page is
   * cross-origin isolated (WebAssembly threads need shared memory, which browsers give only such pages), else one:
   * each parallel kernel call costs ~60 µs of waking Web Workers, which a small model's kernels do not earn back.
   * `onProgress({phase: "download"|"load", done, total})` reports bytes received, then parts built.
   */
  static async load(source, { backend = "cpu", kernel = "auto", threads, onProgress } = {}) {
    const url = new URL("./worker.js", import.meta.url);
    if (kernel !== "auto") url.searchParams.set("kernel", kernel);
    threads ??= globalThis.crossOriginIsolated && (await byteSize(source)) >= THREADED_BYTES
      ? navigator.hardwareConcurrency ?? 1 : 1;
    if (backend === "cpu" && threads > 1) url.searchParams.set("threads", threads);
    const model = new BitNet(new Worker(url, { type: "module" }));
    try {
      model.info = await model.#call("load", { source, backend }, onProgress);
    } catch (e) {
      model.close();
      throw e;
    }
    return model;
  }

  /** Token ids of `text` (BOS first when the model wants it, unless `bos` is false). */
  tokenize(text, { bos = true } = {}) {
    return this.#call("tokenize", { text, bos });
  }

  /** The text of token ids. */
  detokenize(ids) {
    return this.#call("detokenize", { ids: Array.from(ids) });
  }

  /** Continues `prompt`, yielding pieces of text as they become final; greedy unless `temperature` > 0. */
  generate(prompt, options = {}) {
    return this.#steps("generate", { prompt, options });
  }

  /**
   * Replies to `messages` (OpenAI's chat messages: system, user, assistant with `tool_calls`, tool with
   * `tool_call_id`) in the model's chat template, yielding the reply's text as it becomes final (with `tools`, a
   * text answer's). Options: `generate`'s, and `tools` (OpenAI's function tools), `toolChoice` ("auto",
   * "required", "none" or `{type: "function", function: {name}}`), `parallelToolCalls`. Once it ends,
   * `reply.message` is the assistant's message to append to `messages`: `{role, content}`, or `{role, content:
   * null, tool_calls}` (then `stats.finishReason` is "tool_calls"). The turns the last generation ran are not run
   * again (`stats.cachedTokens`).
   */
  chat(messages, options = {}) {
    return this.#steps("chat", { messages, options });
  }

  /** The pieces of a generation started by `op`; the returned iterator's `message` is set when a chat ends. */
  #steps(op, args) {
    const stats = { promptTokens: 0, cachedTokens: 0, tokens: 0, prefillMs: 0, decodeMs: 0, decodeTokS: 0,
      finishReason: null };
    const run = async function* (model) {
      const handle = await model.#call(op, args);
      model.stats = stats;
      let finished = false;
      let prefillTokens = 0;
      try {
        for (let first = true; ; first = false) {
          const step = await model.#call("next", { handle });
          Object.assign(stats, { promptTokens: step.promptTokens, cachedTokens: step.cachedTokens, tokens: step.tokens,
            finishReason: step.finishReason });
          if (step.message !== undefined) iterator.message = JSON.parse(step.message);
          // the first call runs the prompt and samples the first token(s); each later token is one decode step
          if (first) [stats.prefillMs, prefillTokens] = [step.ms, step.tokens];
          else stats.decodeMs += step.ms;
          stats.decodeTokS = stats.decodeMs > 0 ? ((stats.tokens - prefillTokens) * 1000) / stats.decodeMs : 0;
          if (step.piece === undefined) {
            finished = true;
            return;
          }
          yield step.piece;
        }
      } finally {
        // the caller stopped early (break, or an error): free the generation's cache now
        if (!finished && !model.#dead) model.#call("drop", { handle }).catch(() => {});
      }
    };
    const iterator = run(this);
    iterator.message = null;
    return iterator;
  }

  /** Stops the worker and frees the model. */
  close() {
    this.#worker.terminate();
    this.#dead = "the model was closed";
  }

  #call(op, args, onProgress) {
    if (this.#dead) return Promise.reject(new Error(this.#dead));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress });
      const transfer = args.source instanceof ArrayBuffer ? [args.source] : [];
      this.#worker.postMessage({ id, op, ...args }, transfer);
    });
  }
}
