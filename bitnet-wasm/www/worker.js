// The engine's thread: owns the WebAssembly module and the model, so the page never blocks while the model runs.
// Requests are `{id, op, ...args}`; every reply is `{id, result}` or `{id, error, fatal}`, progress `{id, progress}`.

// The smallest module using relaxed SIMD's `i32x4.relaxed_dot_i8x16_i7x16_add` (opcode 0xfd 0x113): a browser that
// validates it runs the module built with relaxed SIMD (the ternary kernel's dot product in one instruction: ~2.5×
// the prefill), any other the plain SIMD128 one. A module using an instruction the browser lacks does not compile
// at all, hence two builds. `worker.js?kernel=simd128` takes the plain one regardless.
const v128Zero = [0xfd, 0x0c, ...new Array(16).fill(0)];
const relaxedProbe = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
  0x03, 0x02, 0x01, 0x00, // one function of that type
  0x0a, 0x3d, 0x01, 0x3b, 0x00, ...v128Zero, ...v128Zero, ...v128Zero, 0xfd, 0x93, 0x02, 0x0b, // its code
]);
const params = new URL(self.location.href).searchParams;
const relaxed = params.get("kernel") !== "simd128" && WebAssembly.validate(relaxedProbe);
// `worker.js?threads=N` (N > 1, from a cross-origin isolated page: shared memory needs it) runs the CPU kernels on N
// threads: the module built with WebAssembly threads (and relaxed SIMD), whose rayon pool starts N Web Workers on
// its memory. Without isolation or relaxed SIMD, one thread.
const threads = Number(params.get("threads") ?? 1);
const threaded = threads > 1 && relaxed && self.crossOriginIsolated === true;
const pkg = threaded ? "./pkg-threads/bitnet_wasm.js" : relaxed ? "./pkg-relaxed/bitnet_wasm.js" : "./pkg/bitnet_wasm.js";
let GgufBuffer, Model;
const ready = import(pkg).then(async (module) => {
  await module.default();
  if (threaded) await module.initThreadPool(threads);
  ({ GgufBuffer, Model } = module);
});
let model = null;
const generations = new Map();
let nextGeneration = 1;
let crashed = null;

onmessage = async ({ data: { id, op, ...args } }) => {
  try {
    await ready;
    if (crashed) throw new Error(`the engine stopped after an internal error (${crashed}): load the model again`);
    postMessage({ id, result: await ops[op](args, (progress) => postMessage({ id, progress })) });
  } catch (e) {
    // A trap leaves the module's memory in an unknown state: refuse further work instead of guessing.
    const fatal = e instanceof WebAssembly.RuntimeError;
    if (fatal) crashed = e.message;
    postMessage({ id, error: e?.message ?? String(e), fatal });
  }
};

const ops = {
  async load({ source, backend }, progress) {
    for (const g of generations.values()) g.free();
    generations.clear();
    model?.free();
    model = null;
    const file = await receive(source, (done, total) => progress({ phase: "download", done, total }));
    if (backend === "webgpu" && !(await navigator.gpu?.requestAdapter())) {
      throw new Error("WebGPU: this browser gives the page no GPU adapter (no navigator.gpu, or it found no device)");
    }
    model = await Model.load(file, backend, (done, total) => progress({ phase: "load", done, total }));
    return JSON.parse(model.info);
  },
  tokenize: ({ text, bos }) => Array.from(loaded().tokenize(text, bos ?? true)),
  detokenize: ({ ids }) => loaded().detokenize(Uint32Array.from(ids)),
  generate: ({ prompt, options }) => started(loaded().generate(prompt, JSON.stringify(options ?? {}))),
  chat: ({ messages, options }) => started(loaded().chat(JSON.stringify(messages ?? null), JSON.stringify(options ?? {}))),
  // One piece of text (`piece` undefined at the end) and the counts so far; the first call runs the prompt.
  async next({ handle }) {
    const g = generations.get(handle);
    if (!g) throw new Error("this generation has ended");
    const start = performance.now();
    const step = await g.next();
    step.ms = performance.now() - start;
    if (step.piece === undefined) ops.drop({ handle });
    return step;
  },
  drop({ handle }) {
    generations.get(handle)?.free();
    generations.delete(handle);
  },
};

function started(generation) {
  const handle = nextGeneration++;
  generations.set(handle, generation);
  return handle;
}

function loaded() {
  if (!model) throw new Error("no model is loaded");
  return model;
}

// Reads a URL, a File/Blob or bytes into the module's memory piece by piece (one copy, never a second in JS).
async function receive(source, progress) {
  let stream, size, name;
  if (typeof source === "string") {
    name = source;
    const response = await fetch(source).catch((e) => { throw new Error(`cannot fetch ${source}: ${e.message}`); });
    if (!response.ok) throw new Error(`cannot fetch ${source}: HTTP ${response.status} ${response.statusText}`);
    size = Number(response.headers.get("content-length")) || 0;
    stream = response.body;
  } else if (source instanceof Blob) {
    name = source.name ?? "the file";
    size = source.size;
    stream = source.stream();
  } else {
    const bytes = source instanceof ArrayBuffer ? new Uint8Array(source) : source;
    stream = new Blob([bytes]).stream();
    size = bytes.byteLength;
    name = "the bytes given";
  }
  const file = new GgufBuffer(name, size);
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    file.push(value);
    progress(file.length, size);
  }
  if (file.length === 0) throw new Error("the model file is empty");
  return file;
}
