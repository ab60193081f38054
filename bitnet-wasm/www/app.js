// The page: loads the shipped model (or `?model=URL`, or a dropped/picked file), streams generated text (a
// continuation of the prompt, or with "Chat" the reply to a conversation in the model's chat template), shows tok/s
// and what runs the model. State for tests and scripts: `document.body.dataset.state` is
// "loading" | "ready" | "generating" | "error"; `dataset.loads` and `dataset.generations` count those that ended.
import { BitNet } from "./bitnet.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let model = null;
let running = null;
/** The chat so far (OpenAI's messages), shown in #conversation; the reply being written is in #output. */
let conversation = [];

function setState(state, status) {
  document.body.dataset.state = state;
  if (status !== undefined) $("status").textContent = status;
  $("run").disabled = state === "loading" || state === "error" && !model;
  $("run").textContent = state === "generating" ? "Stop" : "Generate";
}

function ended(counter) {
  document.body.dataset[counter] = Number(document.body.dataset[counter] ?? 0) + 1;
}

function fail(e) {
  $("error").textContent = e.message ?? String(e);
  setState("error", model ? "Ready (the last request failed)." : "No model loaded.");
}

let current = null;

async function load(source, name) {
  current = { source, name };
  const backend = $("backend").value;
  model?.close();
  model = null;
  newChat();
  $("error").textContent = "";
  $("model-name").textContent = name;
  setState("loading", `Loading ${name}…`);
  const started = performance.now();
  try {
    model = await BitNet.load(source, {
      backend,
      kernel: params.get("kernel") ?? "auto",
      threads: params.has("threads") ? Number(params.get("threads")) : undefined,
      onProgress: ({ phase, done, total }) => {
        const what = phase === "download"
          ? `${(done / 1e6).toFixed(1)}${total ? ` of ${(total / 1e6).toFixed(1)}` : ""} MB`
          : `part ${done} of ${total}`;
        $("status").textContent = `Loading ${name}: ${what}`;
      },
    });
  } catch (e) {
    fail(e);
    return ended("loads");
  }
  const i = model.info;
  const secs = ((performance.now() - started) / 1000).toFixed(2);
  const runs = i.backend === "webgpu" ? "WebGPU, CubeCL kernels as WGSL" : `WebAssembly, ${i.kernel} kernel, prompts by ${i.prefillKernel}, ${i.threads === 1 ? "one thread" : `${i.threads} threads`}`;
  setState("ready", `Ready in ${secs} s: ${i.architecture}, ${i.layers} layers × ${i.hidden}, vocabulary ${i.vocab}. ` +
    `Backend: ${i.backend} (${runs}).`);
  ended("loads");
}

async function generate() {
  if (running) return void (running.stop = true);
  const options = {
    maxTokens: Number($("max-tokens").value),
    temperature: Number($("temperature").value),
    topK: Number($("top-k").value),
    seed: Number($("seed").value),
  };
  $("error").textContent = "";
  const chat = $("chat").checked;
  const messages = [...conversation, { role: "user", content: $("prompt").value }];
  if (chat) showConversation(messages);
  $("output").textContent = "";
  running = { stop: false };
  setState("generating", "Generating…");
  try {
    const pieces = chat ? model.chat(messages, options) : model.generate($("prompt").value, options);
    for await (const piece of pieces) {
      $("output").textContent += piece;
      const s = model.stats;
      $("status").textContent = `Generating: ${s.tokens} tokens, ${s.decodeTokS.toFixed(1)} tok/s`;
      if (running.stop) break;
    }
    if (chat && pieces.message) {
      conversation = [...messages, pieces.message];
      $("prompt").value = "";
      $("new-chat").hidden = false;
    }
    const s = model.stats;
    setState("ready", `${s.promptTokens} prompt tokens (${s.cachedTokens} cached) in ${(s.prefillMs / 1000).toFixed(2)} s; ` +
      `${s.tokens} generated at ${s.decodeTokS.toFixed(1)} tok/s (${s.finishReason ?? "stopped"}). Backend: ` +
      `${model.info.backend} (${model.info.kernel}).`);
  } catch (e) {
    fail(e);
  } finally {
    running = null;
    ended("generations");
  }
}

/** Shows `messages` as the conversation above the reply being written. */
function showConversation(messages) {
  $("conversation").replaceChildren(...messages.map(({ role, content }) => {
    const p = document.createElement("p");
    p.className = role;
    p.textContent = `${role === "user" ? "You" : "Assistant"}: ${content}`;
    return p;
  }));
}

function newChat() {
  conversation = [];
  showConversation([]);
  $("output").textContent = "";
  $("new-chat").hidden = true;
}

$("run").onclick = generate;
$("new-chat").onclick = newChat;
$("chat").onchange = newChat;
$("backend").value = params.get("backend") ?? "cpu";
$("backend").onchange = () => load(current.source, current.name);
$("file").onchange = () => $("file").files[0] && load($("file").files[0], $("file").files[0].name);
const drop = $("drop");
drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const file = e.dataTransfer.files[0];
  if (file) load(file, file.name);
};

const url = params.get("model") ?? "models/shakespeare-bitnet-i2_s.gguf";
load(url, url);
