"""The real `openai` client against `bitnet serve`, unmodified: chat and completions, streamed and not.

Usage: openai_client.py BASE_URL API_KEY. Prints one JSON object with the greedy texts (the Rust test compares
them with the CLI's) and exits non-zero on any mismatch or unexpected error type.
"""

import datetime
import ipaddress
import json
import re
import sys
import urllib.request
import uuid
from typing import Annotated, List, Literal, Optional

import openai
from openai.lib._pydantic import to_strict_json_schema
import pydantic
from pydantic import BaseModel, EmailStr, Field

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
model = client.models.list().data[0].id
messages = [{"role": "user", "content": "Who art thou?"}]

chat = client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0)
choice = chat.choices[0]
assert choice.message.role == "assistant", choice
assert choice.finish_reason in ("stop", "length"), choice
assert 0 < chat.usage.completion_tokens <= 24 and chat.usage.prompt_tokens > 0, chat.usage
assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens

chunks = list(
    client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
)
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert streamed == choice.message.content, (streamed, choice.message.content)
assert chunks[0].choices[0].delta.role == "assistant"
assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == choice.finish_reason
assert chunks[-1].usage.completion_tokens == chat.usage.completion_tokens
# The same prompt again: the slot still holds it, so all but its last token come from the cache.
assert chunks[-1].usage.prompt_tokens_details.cached_tokens == chat.usage.prompt_tokens - 1, chunks[-1].usage
# llama-server's cache_prompt=false runs it whole, to the same reply.
uncached = client.chat.completions.create(
    model=model, messages=messages, max_tokens=24, temperature=0, extra_body={"cache_prompt": False}
)
assert uncached.usage.prompt_tokens_details.cached_tokens == 0, uncached.usage
assert uncached.choices[0].message.content == choice.message.content

completion = client.completions.create(model=model, prompt="ROMEO:", max_tokens=16, temperature=0, stop=["\n\n"])
pieces = client.completions.create(model=model, prompt="ROMEO:", max_tokens=16, temperature=0, stop=["\n\n"], stream=True)
streamed = "".join(c.choices[0].text for c in pieces)
assert streamed == completion.choices[0].text, (streamed, completion.choices[0].text)

sampled = [
    client.completions.create(model=model, prompt="ROMEO:", max_tokens=12, temperature=1.0, seed=7).choices[0].text
    for _ in range(2)
]
assert sampled[0] == sampled[1], sampled

# n choices: each seeded choice is its own draw (they differ; the same request again gives the same ones), the
# prompt's tokens are counted once, streamed choices (told apart by index) add up to the whole ones, and greedy
# choices are all the greedy text. (cache_prompt off: every choice runs its prompt whole, whatever the slots held.)
drawn = dict(model=model, messages=messages, max_tokens=12, temperature=1.0, seed=7, n=3, extra_body={"cache_prompt": False})
many = client.chat.completions.create(**drawn)
assert [c.index for c in many.choices] == [0, 1, 2], many
texts = [c.message.content for c in many.choices]
assert len(set(texts)) > 1, texts
assert [c.message.content for c in client.chat.completions.create(**drawn).choices] == texts
assert many.usage.prompt_tokens == chat.usage.prompt_tokens, many.usage
assert 3 <= many.usage.completion_tokens <= 36, many.usage
parts = ["", "", ""]
for c in client.chat.completions.create(**drawn, stream=True):
    for one in c.choices:
        parts[one.index] += one.delta.content or ""
assert parts == texts, (parts, texts)
greedy = client.completions.create(model=model, prompt="ROMEO:", max_tokens=16, temperature=0, stop=["\n\n"], n=2)
assert [c.text for c in greedy.choices] == [completion.choices[0].text] * 2, greedy

# llama-server's `grammar` (GBNF): every reply is a sentence of the grammar (checked by Python's re), and ends
# where nothing can follow.
answer = 'root ::= ("yes" | "no") ", " [a-z]{1,12} (" " [a-z]{1,12})? "."'
for seed in range(3):
    held = client.chat.completions.create(
        model=model, messages=messages, max_tokens=40, temperature=0.8, seed=seed, extra_body={"grammar": answer}
    ).choices[0]
    assert re.fullmatch(r"(yes|no), [a-z]{1,12}( [a-z]{1,12})?\.", held.message.content), held
    assert held.finish_reason == "stop", held

# Log-probabilities: the generated tokens' bytes spell the reply; greedy picks each position's most likely token;
# streamed chunks carry the same tokens and values as the whole reply.
scored = client.chat.completions.create(
    model=model, messages=messages, max_tokens=12, temperature=0, logprobs=True, top_logprobs=3
)
tokens = scored.choices[0].logprobs.content
assert scored.choices[0].message.content == choice.message.content[: len(scored.choices[0].message.content)]
assert bytes(b for t in tokens for b in t.bytes).decode() == scored.choices[0].message.content, tokens
for t in tokens:
    assert len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token, t
    assert t.top_logprobs[0].logprob == t.logprob <= 0, t
    assert all(a.logprob >= b.logprob for a, b in zip(t.top_logprobs, t.top_logprobs[1:])), t
streamed = [
    t
    for c in client.chat.completions.create(
        model=model, messages=messages, max_tokens=12, temperature=0, logprobs=True, top_logprobs=3, stream=True
    )
    if c.choices and c.choices[0].logprobs
    for t in c.choices[0].logprobs.content
]
assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in tokens], (streamed, tokens)
legacy = client.completions.create(model=model, prompt="ROMEO:", max_tokens=8, temperature=0, logprobs=2)
lp = legacy.choices[0].logprobs
assert "".join(lp.tokens) == legacy.choices[0].text, lp
assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))], lp
for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
    assert top[token] == value == max(top.values()) and 2 <= len(top) <= 3, (token, value, top)

# Scoring text as evaluation harnesses do (lm-eval's loglikelihood): echo returns the prompt, each of its tokens
# scored given the ones before, then the completion.
scored = client.completions.create(
    model=model, prompt="ROMEO: Who art thou?", max_tokens=1, temperature=0, logprobs=1, echo=True
)
lp = scored.choices[0].logprobs
assert len(lp.tokens) == scored.usage.prompt_tokens + 1 and "".join(lp.tokens) == scored.choices[0].text, lp
assert lp.token_logprobs[0] is None and all(v <= 0 for v in lp.token_logprobs[1:]), lp
assert scored.choices[0].text.endswith("ROMEO: Who art thou?" + lp.tokens[-1]), scored.choices[0].text

# JSON mode: every reply that ends on its own is an object Python's json reads, streamed or not. Trained on plays,
# the model never ends a string by itself, so the quote and the brace are lifted with logit_bias.
def post(path, body):
    request = urllib.request.Request(
        base + path, data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as reply:
        return json.load(reply)


def token_id(text):
    return post("/tokenize", {"content": text})["tokens"][0]


ask = [{"role": "user", "content": "Describe Romeo in JSON."}]
json_mode = dict(
    model=model, messages=ask, max_tokens=200, temperature=0.8, response_format={"type": "json_object"},
    logit_bias={str(token_id('"')): 4, str(token_id("}")): 4},
)
closed = []
for seed in range(6):
    reply = client.chat.completions.create(seed=seed, **json_mode).choices[0]
    if reply.finish_reason == "stop":
        assert isinstance(json.loads(reply.message.content), dict), reply.message.content
        closed.append((seed, reply.message.content))
    else:
        assert reply.finish_reason == "length", reply
assert len(closed) >= 2, closed
seed, content = closed[0]
chunks = client.chat.completions.create(seed=seed, stream=True, **json_mode)
assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == content
free = client.chat.completions.create(model=model, messages=ask, max_tokens=200, temperature=0.8, seed=seed)
try:
    json.loads(free.choices[0].message.content)
    raise SystemExit("the model wrote JSON unasked: the test above shows nothing")
except json.JSONDecodeError:
    pass

# Structured outputs: the client's own path for a pydantic model (`parse` sends OpenAI's strict JSON schema and
# validates the reply with pydantic, the reference here). Every reply that ends on its own is a Character; one is
# streamed to the same text; a schema outside the subset is a 400 naming the keyword.
class Friend(BaseModel):
    name: str


class Character(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=40)]
    code: Annotated[str, Field(pattern=r"^[A-Z]{2}-\d{2}$")]
    age: Annotated[int, Field(ge=0, le=120)]
    mood: Literal["merry", "sad"]
    friends: Annotated[List[Friend], Field(min_length=1, max_length=2)]
    title: Optional[str]
    height: float
    alive: bool


structured = dict(model=model, messages=ask, max_tokens=300, temperature=0.8, logit_bias=json_mode["logit_bias"])
parsed = []
for seed in range(6):
    try:
        reply = client.chat.completions.parse(seed=seed, response_format=Character, **structured).choices[0]
    except openai.LengthFinishReasonError:
        continue
    assert reply.finish_reason == "stop" and isinstance(reply.message.parsed, Character), reply
    parsed.append((seed, reply.message.content))
assert len(parsed) >= 2, parsed
seed, content = parsed[0]
schema = {"type": "json_schema", "json_schema": {"name": "Character", "schema": to_strict_json_schema(Character)}}
chunks = client.chat.completions.create(seed=seed, stream=True, response_format=schema, **structured)
assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == content
# String formats: pydantic's date and time, UUID, IP address, timedelta and EmailStr fields (JSON Schema `format`s)
# are written as pydantic (and email-validator, for the address) read them back; without the formats held, the
# model writes verse into them.
class Record(BaseModel):
    when: datetime.datetime
    day: datetime.date
    at: datetime.time
    id: uuid.UUID
    host: ipaddress.IPv4Address
    host6: ipaddress.IPv6Address
    took: datetime.timedelta
    mail: EmailStr


# (this model, trained on verse, fills JSON with line breaks and indents: whitespace-only tokens are banned)
runs = [c * k for c in [" ", "\n", "\t", "\r\n", "\n "] for k in range(1, 25)]
spaces = {i for run in runs for i in post("/tokenize", {"content": run})["tokens"]}
spaces = [i for i in spaces if not post("/detokenize", {"tokens": [i]})["content"].strip()]
compact = {**json_mode["logit_bias"], **{str(i): -100 for i in spaces}}
records = []
for seed in range(6):
    try:
        reply = client.chat.completions.parse(
            seed=seed, response_format=Record, **{**structured, "max_tokens": 480, "logit_bias": compact}
        ).choices[0]
    except openai.LengthFinishReasonError:
        continue
    assert reply.finish_reason == "stop" and isinstance(reply.message.parsed, Record), reply
    records.append(reply.message.parsed)
assert len(records) >= 2, records
unique = {"type": "object", "properties": {"s": {"type": "array", "uniqueItems": True}}}
try:
    client.chat.completions.create(
        model=model, messages=ask, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": unique}}
    )
    raise SystemExit("a schema with uniqueItems was accepted")
except openai.BadRequestError as e:
    assert "uniqueItems" in e.message and "#/properties/s" in e.message, e.message

# Function calling: the client's own strict tools from pydantic models (`parse` checks each call's arguments with
# pydantic, the reference here). A required call names one of the tools with arguments its model accepts; the
# same call streamed arrives as the client's tool-call deltas; a conversation carrying a call and its result is
# answered (a call or content); unusable tools are a 400 naming the field.
class GetWeather(BaseModel):
    city: Literal["Verona", "Mantua"]
    days: Annotated[int, Field(ge=1, le=7)]


class GetTime(BaseModel):
    zone: Literal["CET", "UTC"]


# (short names: the schemas go into the prompt, and the model holds 512 positions)
tools = [openai.pydantic_function_tool(GetWeather, name="weather"), openai.pydantic_function_tool(GetTime, name="time")]
asked = [{"role": "user", "content": "Weather?"}]
# (whitespace-only tokens banned, as above)
calling = dict(
    model=model, messages=asked, max_tokens=120, temperature=0.8, tools=tools, tool_choice="required",
    logit_bias=compact,
)
names = {"weather": GetWeather, "time": GetTime}
for seed in range(3):
    reply = client.chat.completions.parse(seed=seed, **calling).choices[0]
    assert reply.finish_reason == "tool_calls" and reply.message.content is None, reply
    (call,) = reply.message.tool_calls
    assert call.type == "function" and call.id, call
    assert isinstance(call.function.parsed_arguments, names[call.function.name]), call
    # streamed as it is written: the call's id and name, then its arguments in pieces
    streamed, pieces = {}, 0
    finish = None
    for chunk in client.chat.completions.create(seed=seed, stream=True, **calling):
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = streamed.setdefault(delta.index, {"id": delta.id, "name": "", "arguments": ""})
            entry["name"] += delta.function.name or ""
            entry["arguments"] += delta.function.arguments or ""
            pieces += bool(delta.function.arguments)
        finish = chunk.choices[0].finish_reason or finish
    assert pieces > 2, pieces
    assert finish == "tool_calls" and list(streamed) == [0] and streamed[0].pop("id"), streamed
    assert streamed[0] == {"name": call.function.name, "arguments": call.function.arguments}, streamed
# cut by the token limit two tokens before its end: the call so far, its arguments cut short, and the finish
# reason says so (streamed too)
whole = client.chat.completions.create(seed=0, **calling)
short = {**calling, "max_tokens": whole.usage.completion_tokens - 2}
cut = client.chat.completions.create(seed=0, **short).choices[0]
(full,) = whole.choices[0].message.tool_calls
assert cut.finish_reason == "length" and cut.message.tool_calls[0].function.name == full.function.name, cut
assert full.function.arguments.startswith(cut.message.tool_calls[0].function.arguments), (cut, full)
finishes = [c.choices[0].finish_reason for c in client.chat.completions.create(seed=0, stream=True, **short)]
assert finishes[-1] == "length", finishes
# an answer (tool_choice auto) streams as it is written: several content deltas that add up to the whole reply's
answers = []
for seed in range(12):
    reply = client.chat.completions.create(seed=seed, **{**calling, "tool_choice": "auto", "max_tokens": 60}).choices[0]
    if reply.finish_reason == "stop" and len(reply.message.content or "") >= 10:
        chunks = client.chat.completions.create(seed=seed, stream=True, **{**calling, "tool_choice": "auto", "max_tokens": 60})
        deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert "".join(deltas) == reply.message.content and len(deltas) > 2, (deltas, reply)
        answers.append(seed)
assert answers, "no seed answered in text: the streamed answer went untested"
named = {"type": "function", "function": {"name": "time"}}
reply = client.chat.completions.parse(seed=0, **{**calling, "tool_choice": named}).choices[0]
assert reply.message.tool_calls[0].function.name == "time", reply
history = asked + [
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
    {"role": "tool", "tool_call_id": call.id, "content": "Sunny, and hot."},
]
answered = {**calling, "messages": history, "tools": tools[:1], "tool_choice": "auto", "max_tokens": 40}
answer = client.chat.completions.create(seed=1, **answered)
reply = answer.choices[0]
assert reply.finish_reason in ("tool_calls", "stop", "length"), reply
if reply.finish_reason == "tool_calls":
    assert reply.message.tool_calls[0].function.name in names, reply
# the result reaches the prompt: a longer one takes more tokens
history[-1]["content"] += " No rain for a week, they say."
longer = client.chat.completions.create(seed=1, **{**answered, "messages": history, "max_tokens": 1})
assert longer.usage.prompt_tokens > answer.usage.prompt_tokens, (longer.usage, answer.usage)
for bad, field in [
    ([{"type": "function", "function": {"name": "f", "parameters": unique}}], "tools[0].function.parameters"),
    ([{"type": "function", "function": {"name": "no spaces"}}], "tools[0].function.name"),
]:
    try:
        client.chat.completions.create(model=model, messages=asked, tools=bad)
        raise SystemExit(f"{field}: accepted")
    except openai.BadRequestError as e:
        assert field in e.message, e.message
try:
    client.chat.completions.create(model=model, messages=asked, tools=tools, tool_choice=named | {"function": {"name": "f"}})
    raise SystemExit("a tool_choice naming no tool was accepted")
except openai.BadRequestError as e:
    assert "tool_choice" in e.message, e.message

# The Responses API: the same greedy reply as the chat endpoint's, whole and as typed events (deltas adding up to
# it, numbered in order, ending with the final response); input items as parts; function calls (arguments that the
# tool's pydantic model accepts) and their outputs sent back; the client's own `parse` with a pydantic text_format.
greedy = client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0)
whole = client.responses.create(model=model, input="Who art thou?", max_output_tokens=24, temperature=0)
assert whole.object == "response" and whole.output_text == greedy.choices[0].message.content, whole
assert whole.usage.input_tokens == greedy.usage.prompt_tokens and whole.usage.output_tokens == greedy.usage.completion_tokens
assert whole.status == ("incomplete" if greedy.choices[0].finish_reason == "length" else "completed"), whole
events = list(client.responses.create(model=model, input="Who art thou?", max_output_tokens=24, temperature=0, stream=True))
assert [e.sequence_number for e in events] == list(range(len(events))), events
assert events[0].type == "response.created" and events[-1].type == f"response.{whole.status}", events
assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == whole.output_text
assert events[-1].response.output_text == whole.output_text
parts = [{"role": "user", "content": [{"type": "input_text", "text": "Who art thou?"}]}]
assert client.responses.create(model=model, input=parts, max_output_tokens=24, temperature=0).output_text == whole.output_text
flat = [{"type": "function", "name": t["function"]["name"], "parameters": t["function"]["parameters"], "strict": True}
        for t in tools]
extra = {"logit_bias": calling["logit_bias"], "seed": 0}
called = client.responses.create(
    model=model, input="Weather?", tools=flat, tool_choice="required", max_output_tokens=120, extra_body=extra
)
(item,) = called.output
assert item.type == "function_call" and item.call_id and called.status == "completed", called
names[item.name].model_validate_json(item.arguments)
streamed = list(client.responses.create(
    model=model, input="Weather?", tools=flat, tool_choice="required", max_output_tokens=120, extra_body=extra, stream=True
))
done = [e.item for e in streamed if e.type == "response.output_item.done"]
assert [(d.name, d.arguments) for d in done] == [(item.name, item.arguments)], done
pieces = [e.delta for e in streamed if e.type == "response.function_call_arguments.delta"]
assert "".join(pieces) == item.arguments and len(pieces) > 2, pieces
back = [{"role": "user", "content": "Weather?"}, {"type": "function_call", "call_id": item.call_id, "name": item.name,
        "arguments": item.arguments}, {"type": "function_call_output", "call_id": item.call_id, "output": "Sunny."}]
answered = client.responses.create(model=model, input=back, tools=flat[:1], max_output_tokens=40, extra_body=extra)
assert answered.status in ("completed", "incomplete") and answered.output, answered
for seed in range(6):
    try:
        parsed = client.responses.parse(
            model=model, input="Describe Romeo in JSON.", text_format=Character, max_output_tokens=300,
            temperature=0.8, extra_body={"seed": seed, "logit_bias": json_mode["logit_bias"]},
        )
    except (openai.LengthFinishReasonError, pydantic.ValidationError):
        continue
    if parsed.status == "completed":
        assert isinstance(parsed.output_parsed, Character), parsed
        break
else:
    raise SystemExit("no structured response completed")
# Kept responses: a follow-up names the previous response and sends only what is new, and is answered as the
# same conversation sent whole (the reference: the same tokens in, the same greedy text out), most of its input
# cached from the turn before; streamed ones are kept too; a kept response is retrieved and deleted; one made with
# `store=False` cannot be followed up.
greedy = dict(model=model, max_output_tokens=24, temperature=0)
first = client.responses.create(input="Who art thou?", **greedy)
follow = client.responses.create(previous_response_id=first.id, input="Speak again.", **greedy)
sent_whole = client.responses.create(input=[
    {"role": "user", "content": "Who art thou?"}, {"role": "assistant", "content": first.output_text},
    {"role": "user", "content": "Speak again."}], **greedy)
assert follow.output_text == sent_whole.output_text and follow.previous_response_id == first.id, follow
assert follow.usage.input_tokens == sent_whole.usage.input_tokens > first.usage.input_tokens, (follow, first)
again = client.responses.create(previous_response_id=first.id, input="Speak again.", **greedy)
assert again.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens, again.usage
events = list(client.responses.create(previous_response_id=follow.id, input="And?", stream=True, **greedy))
third = client.responses.create(previous_response_id=events[-1].response.id, input="More.", **greedy)
assert third.usage.input_tokens > events[-1].response.usage.input_tokens, third.usage
assert client.responses.retrieve(follow.id).output_text == follow.output_text
client.responses.delete(first.id)
for gone in [lambda: client.responses.retrieve(first.id), lambda: client.responses.delete(first.id)]:
    try:
        gone()
        raise SystemExit("a deleted response was found")
    except openai.NotFoundError as e:
        assert first.id in e.message, e.message
unkept = client.responses.create(input="Who art thou?", store=False, **greedy)
for previous in [first.id, unkept.id]:
    try:
        client.responses.create(previous_response_id=previous, input="x", **greedy)
        raise SystemExit("a follow-up to a response not kept was accepted")
    except openai.BadRequestError as e:
        assert e.code == "previous_response_not_found" and previous in e.message, e
for bad, needle in [
    (dict(tools=[{"type": "web_search"}]), "function tools only"),
    (dict(input=[{"type": "reasoning", "summary": []}]), "input[0].type"),
]:
    try:
        client.responses.create(model=model, **{"input": "x", **bad})
        raise SystemExit(f"{needle}: accepted")
    except openai.BadRequestError as e:
        assert needle in e.message, e.message

try:
    client.chat.completions.create(model="no-such-model", messages=messages)
    raise SystemExit("an unknown model was accepted")
except openai.BadRequestError as e:
    assert "no-such-model" in e.message, e.message
try:
    client.chat.completions.create(model=model, messages=[])
    raise SystemExit("empty messages were accepted")
except openai.BadRequestError as e:
    assert "messages" in e.message, e.message
try:
    openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).completions.create(model=model, prompt="x")
    raise SystemExit("a wrong key was accepted")
except openai.AuthenticationError:
    pass

print(json.dumps({"chat": choice.message.content, "completion": completion.choices[0].text}))
