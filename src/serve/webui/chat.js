// The chat page of `bitnet serve`: streams replies from this server's /v1/chat/completions (the model's chat
// template; a conversation's earlier turns are found in a slot or the server's prompt cache, not run again), Stop
// cancels the stream (the server frees the slot), and the conversations (a list, newest first) and settings stay in
// this browser's localStorage. State for tests and scripts:
// `document.body.dataset.state` is "loading" | "ready" | "generating", and `dataset.replies` counts replies that
// ended (finished, stopped or failed).

const $ = (id) => document.getElementById(id);
const SETTINGS = ["system", "temperature", "top-p", "max-tokens", "seed", "api-key"];
const stored = (key, fallback) => {
  try {
    return JSON.parse(localStorage.getItem(key)) ?? fallback;
  } catch {
    return fallback;
  }
};
const store = (key, value) => localStorage.setItem(key, JSON.stringify(value));

/** A new conversation: an id, and its messages: `{role, content}` as the API takes them, and on replies a `note`
 * (tokens, speed, finish). */
const emptyConversation = () => ({ id: `${Date.now()}-${Math.random()}`, messages: [] });
/** Every conversation with messages, the most recently used first. */
let chats = stored("bitnet.chats", []);
/** The conversation shown. */
let chat = chats.find((c) => c.id === stored("bitnet.current", null)) ?? emptyConversation();
/** The reply being written: its AbortController. */
let running = null;
/** What the status line says while nothing is being written. */
let idle = "";

function setState(state, status) {
  document.body.dataset.state = state;
  if (status !== undefined) $("status").textContent = status;
  $("send").textContent = state === "generating" ? "Stop" : "Send";
  $("send").disabled = state === "loading";
}

function headers() {
  const key = $("api-key").value.trim();
  return { "content-type": "application/json", ...(key && { authorization: `Bearer ${key}` }) };
}

/** The message of an OpenAI-style error body, else the status line. */
async function apiError(res) {
  const body = await res.json().catch(() => null);
  const message = body?.error?.message ?? `${res.status} ${res.statusText}`;
  if (res.status === 401) {
    $("settings").open = true;
    $("api-key").focus();
    return new Error(`${message} (this server needs its API key: enter it in Settings)`);
  }
  return new Error(message);
}

/** Waits for the model to load, then shows its name. */
async function connect() {
  setState("loading", "Connecting…");
  for (;;) {
    const health = await fetch("health").catch(() => null);
    if (health?.ok) break;
    $("status").textContent = health ? "Loading the model…" : "The server does not answer; trying again…";
    await new Promise((ok) => setTimeout(ok, 1000));
  }
  const models = await (await fetch("v1/models", { headers: headers() })).json();
  const model = models.data[0];
  $("model").textContent = model.id;
  document.title = `${model.id} · bitnet serve`;
  idle = `${model.meta.n_ctx_slot} positions a conversation`;
  setState("ready", idle);
}

/** The data of each server-sent event in `body`. */
async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const data = buffer.slice(0, end).split("\n").filter((l) => l.startsWith("data:"));
      buffer = buffer.slice(end + 2);
      if (data.length) yield data.map((l) => l.slice(5).trimStart()).join("\n");
    }
  }
}

/** The request's sampling settings: only those filled in (the server's defaults, llama-server's, otherwise). */
function sampling() {
  const number = (id) => ($(id).value === "" ? undefined : Number($(id).value));
  return { temperature: number("temperature"), top_p: number("top-p"), max_tokens: number("max-tokens"),
    seed: number("seed") };
}

/** What the conversation sends: the system prompt, then the turns without their notes. */
function conversation() {
  const system = $("system").value.trim();
  const turns = chat.messages.map(({ role, content }) => ({ role, content }));
  return system ? [{ role: "system", content: system }, ...turns] : turns;
}

/** Streams the reply to the conversation into a new message; Stop keeps what was written. */
async function reply() {
  const written = { role: "assistant", content: "", note: "" };
  const view = show(written);
  const asked = chat;
  running = new AbortController();
  setState("generating", "Writing…");
  $("error").textContent = "";
  let finish = null, usage = null, timings = null;
  try {
    const res = await fetch("v1/chat/completions", {
      method: "POST", headers: headers(), signal: running.signal,
      body: JSON.stringify({ messages: conversation(), stream: true, stream_options: { include_usage: true },
        ...sampling() }),
    });
    if (!res.ok) throw await apiError(res);
    for await (const data of events(res.body)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const choice = chunk.choices[0];
      if (choice?.delta?.content) {
        written.content += choice.delta.content;
        view.text.textContent = written.content;
      }
      finish = choice?.finish_reason ?? finish;
      timings = chunk.timings ?? timings;
      usage = chunk.usage ?? usage;
    }
    written.note = note(usage, timings, finish);
  } catch (e) {
    // stopped before a word was written: as if it had not been asked
    if (e.name !== "AbortError" || !written.content) {
      view.element.remove();
      $("error").textContent = e.name === "AbortError" ? "" : e.message;
      return false;
    }
    written.note = "stopped";
  } finally {
    running = null;
    setState("ready", idle);
    document.body.dataset.replies = Number(document.body.dataset.replies ?? 0) + 1;
  }
  asked.messages.push(written);
  save();
  // another conversation shown while it was written: the reply is in its own
  if (asked !== chat) return true;
  view.note.textContent = written.note;
  showRetry();
  return true;
}

/** Stores the conversations with messages and which one is shown. */
function save() {
  chats = chats.filter((c) => c.messages.length);
  store("bitnet.chats", chats);
  store("bitnet.current", chat.id);
  list();
}

/** The conversation list: each by its first words, the one shown selected. */
function list() {
  const title = (c) => {
    const first = c.messages.find((m) => m.role === "user")?.content.trim().split("\n")[0] ?? "";
    return first.length > 40 ? `${first.slice(0, 40)}…` : first || "New chat";
  };
  const shownToo = chats.includes(chat) ? chats : [chat, ...chats];
  $("chats").replaceChildren(...shownToo.map((c) => new Option(title(c), c.id, false, c === chat)));
  $("delete-chat").disabled = !chat.messages.length;
}

/** Shows conversation `c`. */
function open(c) {
  chat = c;
  $("messages").replaceChildren();
  $("error").textContent = "";
  chat.messages.forEach(show);
  showRetry();
  save();
}

/** "N tokens at X tok/s · prompt P tokens (C cached) in S s · finish". */
function note(usage, timings, finish) {
  const parts = [];
  if (usage) {
    const speed = timings?.predicted_per_second ? ` at ${timings.predicted_per_second.toFixed(1)} tok/s` : "";
    parts.push(`${usage.completion_tokens} tokens${speed}`);
    const cached = usage.prompt_tokens_details?.cached_tokens ?? 0;
    const took = timings ? ` in ${(timings.prompt_ms / 1000).toFixed(2)} s` : "";
    parts.push(`prompt ${usage.prompt_tokens} tokens (${cached} cached)${took}`);
  }
  if (finish === "length") parts.push("cut at the token limit");
  return parts.join(" · ");
}

/** Adds a message to the page; returns its element and its text and note parts. */
function show({ role, content, note }) {
  const element = document.createElement("div");
  element.className = `message ${role}`;
  const text = document.createElement("div");
  text.className = "text";
  text.textContent = content;
  const noteLine = document.createElement("div");
  noteLine.className = "note";
  noteLine.textContent = note ?? "";
  element.append(text, noteLine);
  $("messages").append(element);
  element.scrollIntoView({ block: "end" });
  return { element, text, note: noteLine };
}

/** A "Regenerate" button under the last reply: it is replaced by a new one to the same conversation (and comes
 * back if the new one fails or is stopped before a word). */
function showRetry() {
  document.querySelector("#retry")?.remove();
  const last = $("messages").lastElementChild;
  if (!last?.classList.contains("assistant")) return;
  const button = document.createElement("button");
  button.id = "retry";
  button.type = "button";
  button.textContent = "Regenerate";
  button.onclick = async () => {
    if (running) return;
    const { messages } = chat;
    const old = messages.pop();
    last.remove();
    if (!(await reply()) && messages.at(-1)?.role === "user") {
      messages.push(old);
      show(old);
      showRetry();
    }
    save();
  };
  last.append(button);
}

async function send() {
  if (running) return running.abort();
  const content = $("input").value;
  if (!content.trim()) return;
  const user = { role: "user", content };
  const { messages } = chat;
  messages.push(user);
  // the conversation goes to the top of the list
  chats = [chat, ...chats.filter((c) => c !== chat)];
  const view = show(user);
  $("input").value = "";
  document.querySelector("#retry")?.remove();
  if (!(await reply()) && messages.at(-1) === user) {
    // the request failed: the message goes back to the box, to send again
    messages.pop();
    view.element.remove();
    $("input").value = content;
    showRetry();
  }
}

/** Shows a new, empty conversation (the one shown if it is empty already). */
function newChat() {
  if (chat.messages.length) open(emptyConversation());
}

/** Forgets the conversation shown (stopping its reply) and shows the most recent other one. */
function deleteChat() {
  if (running) running.abort();
  chats = chats.filter((c) => c !== chat);
  chat.messages = [];
  open(chats[0] ?? emptyConversation());
}

for (const id of SETTINGS) {
  $(id).value = stored(`bitnet.${id}`, "");
  $(id).oninput = () => store(`bitnet.${id}`, $(id).value);
}
open(chat);
$("chats").onchange = () => open(chats.find((c) => c.id === $("chats").value) ?? chat);
$("composer").onsubmit = (e) => {
  e.preventDefault();
  send();
};
$("input").onkeydown = (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    if (!running) send();
  }
};
$("new-chat").onclick = newChat;
$("delete-chat").onclick = deleteChat;
connect();
