"""The Python package against the `bitnet` CLI on the shipped model: the same tokens, logits and texts.

`BITNET_BIN` names the CLI (default: the workspace's target/{release,debug}/bitnet); `BITNET_MODEL` the model
(default: the shipped Shakespeare model).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import bitnet_burn
from bitnet_burn import Llama, Model

ROOT = Path(__file__).resolve().parents[2]
MODEL = os.environ.get("BITNET_MODEL", str(ROOT / "models" / "shakespeare-bitnet-i2_s.gguf"))
THREADS = 2
PROMPTS = ["ROMEO:", "To be, or not to be", "KING HENRY:\nWhat", "O"]


def cli() -> str:
    if "BITNET_BIN" in os.environ:
        return os.environ["BITNET_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    for profile in ("release", "debug"):
        if (target / profile / "bitnet").exists():
            return str(target / profile / "bitnet")
    pytest.fail("no bitnet CLI: build it (cargo build --release) or set BITNET_BIN")


def run_cli(*args: str) -> str:
    out = subprocess.run([cli(), *args], check=True, capture_output=True, text=True)
    return out.stdout


@pytest.fixture(scope="module")
def model() -> Model:
    return Model(MODEL, threads=THREADS, parallel=2)


def cli_run(prompt: str, n: int, *sampling: str) -> dict:
    return json.loads(run_cli("run", "-m", MODEL, "-t", str(THREADS), "-p", prompt, "-n", str(n), "--json", *sampling))


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_text_equals_the_cli(model: Model, prompt: str) -> None:
    want = cli_run(prompt, 40)
    got = model(prompt, max_tokens=40, temperature=0)
    assert got["choices"][0]["text"] == want["text"]
    assert got["usage"]["prompt_tokens"] == len(want["prompt_ids"])
    assert got["usage"]["completion_tokens"] == len(want["ids"])
    assert got["choices"][0]["finish_reason"] == ("length" if want["stop"] == "MaxTokens" else "stop")


def test_sampling_arguments_reach_the_sampler(model: Model) -> None:
    """Every sampling argument changes the text as the CLI's flag of the same meaning does."""
    cases = [
        (dict(temperature=0.9, top_k=40, top_p=1.0, min_p=0.0, seed=7), ["--temp", "0.9", "--top-k", "40", "-s", "7"]),
        (dict(temperature=1.0, top_k=0, top_p=0.8, min_p=0.0, seed=3), ["--temp", "1.0", "--top-p", "0.8", "-s", "3"]),
        (dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.1, seed=5), ["--temp", "1.0", "--min-p", "0.1", "-s", "5"]),
        (dict(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.3, seed=0), ["--repeat-penalty", "1.3"]),
    ]
    texts = set()
    for kwargs, flags in cases:
        want = cli_run("ROMEO:", 48, *flags)["text"]
        got = model("ROMEO:", max_tokens=48, **kwargs)["choices"][0]["text"]
        assert got == want, (kwargs, flags)
        texts.add(got)
    assert len(texts) == len(cases), "each setting should give a different text on this model"


def test_logit_bias_moves_the_choice_as_the_logits_say(model: Model) -> None:
    """Banning the most likely next token leaves the second; lifting the sixth one unit above the first picks it
    (the ranks from ``model.logits``, which equals the CLI's bit for bit)."""
    ids = model.tokenize("ROMEO:")
    logits = model.logits(ids)[-1]
    order = [int(t) for t in np.argsort(-logits)]
    assert logits[order[1]] - logits[order[2]] > 0.1, "the second is clear of the third on this prompt"
    lift = float(logits[order[0]] - logits[order[5]]) + 1.0
    for bias, expected in [({order[0]: -100}, order[1]), ({order[5]: lift}, order[5])]:
        reply = model(ids, max_tokens=1, temperature=0, logit_bias=bias)["choices"][0]["text"]
        assert reply == model.detokenize([expected]).decode(), bias
    chat = model.create_chat_completion([{"role": "user", "content": "O"}], max_tokens=1, temperature=0,
                                        logit_bias={order[5]: 100})
    assert chat["choices"][0]["message"]["content"] == model.detokenize([order[5]]).decode()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model("O", logit_bias={model.n_vocab(): 1.0})
    with pytest.raises(ValueError, match="not a finite number"):
        model("O", logit_bias={1: float("nan")})


def test_json_mode_replies_are_objects_json_reads(model: Model) -> None:
    """``response_format={"type": "json_object"}``: a reply that ends on its own is an object for Python's json
    (trained on plays, the model never ends a string by itself: the quote and the brace are lifted); without it
    the same request is not JSON."""
    lift = {model.tokenize('"', add_bos=False)[0]: 4.0, model.tokenize("}", add_bos=False)[0]: 4.0}
    ask = [{"role": "user", "content": "Describe Romeo in JSON."}]
    closed = 0
    for seed in range(6):
        reply = model.create_chat_completion(ask, max_tokens=200, temperature=0.8, seed=seed, logit_bias=lift,
                                             response_format={"type": "json_object"})["choices"][0]
        if reply["finish_reason"] == "stop":
            assert isinstance(json.loads(reply["message"]["content"]), dict), reply
            closed += 1
            free = model.create_chat_completion(ask, max_tokens=200, temperature=0.8, seed=seed, logit_bias=lift)
            with pytest.raises(json.JSONDecodeError):
                json.loads(free["choices"][0]["message"]["content"])
    assert closed >= 2, closed
    with pytest.raises(ValueError, match="json_schema"):
        model.create_chat_completion(ask, response_format={"type": "json_schema"})


def test_grammar_replies_are_sentences_of_the_grammar(model: Model, tmp_path: Path) -> None:
    """``grammar`` (a ``LlamaGrammar``, from text or a file, or GBNF text): every sampled reply is a sentence of it
    (checked by ``re``) and ends where the grammar does; a bad grammar raises ``ValueError`` naming where."""
    text = 'root ::= ("yes" | "no") ", " [a-z]{1,12} "."'
    sentence = re.compile(r"(yes|no), [a-z]{1,12}\.")
    path = tmp_path / "answer.gbnf"
    path.write_text(text)
    grammars = [bitnet_burn.LlamaGrammar.from_string(text), bitnet_burn.LlamaGrammar.from_file(path), text]
    for seed, grammar in enumerate(grammars):
        reply = model("ROMEO:", max_tokens=40, temperature=0.8, seed=seed, grammar=grammar)["choices"][0]
        assert sentence.fullmatch(reply["text"]) and reply["finish_reason"] == "stop", reply
    ask = [{"role": "user", "content": "Art thou Romeo?"}]
    chat = model.create_chat_completion(ask, max_tokens=40, seed=3, grammar=text)["choices"][0]
    assert sentence.fullmatch(chat["message"]["content"]), chat
    with pytest.raises(ValueError, match="line 1, column 13"):
        bitnet_burn.LlamaGrammar.from_string("root ::= [a-")
    # llama-cpp-python's from_json_schema: an object the schema allows (Python's json reads it back)
    mood = bitnet_burn.LlamaGrammar.from_json_schema(json.dumps({"type": "object", "properties": {
        "mood": {"enum": ["merry", "sad"]}}, "required": ["mood"], "additionalProperties": False}))
    shaped = model("ROMEO:", max_tokens=200, temperature=0.8, seed=1, grammar=mood)["choices"][0]
    assert shaped["finish_reason"] == "stop" and json.loads(shaped["text"])["mood"] in ("merry", "sad"), shaped
    with pytest.raises(ValueError, match="uniqueItems"):
        unique = {"type": "object", "properties": {"s": {"type": "array", "uniqueItems": True}}}
        model("ROMEO:", grammar=bitnet_burn.LlamaGrammar.from_json_schema(json.dumps(unique)))
    with pytest.raises(ValueError, match="not both"):
        model.create_chat_completion(ask, grammar=text, response_format={"type": "json_object"})


def test_json_schema_replies_validate_as_the_pydantic_model(model: Model) -> None:
    """``response_format`` with pydantic's own JSON schema of a model (``model_json_schema``: titles, ``$defs``,
    ``anyOf`` with null, a ``Literal``, bounded lists, string lengths, a pattern, an integer range, an optional field with a
    default), in OpenAI's and
    llama-cpp-python's spellings: every reply that ends on its own validates as the model in pydantic (the
    reference); a schema outside the subset is a ValueError naming its keyword."""
    pydantic = pytest.importorskip("pydantic")
    from typing import List, Literal, Optional

    class Friend(pydantic.BaseModel):
        name: str

    class Character(pydantic.BaseModel):
        name: str = pydantic.Field(min_length=1, max_length=40)
        code: str = pydantic.Field(pattern=r"^[A-Z]{2}-\d{2}$")
        age: int = pydantic.Field(ge=0, le=120)
        mood: Literal["merry", "sad"]
        friends: List[Friend] = pydantic.Field(min_length=1, max_length=2)
        title: Optional[str]
        motto: Optional[str] = None
        alive: bool

    schema = Character.model_json_schema()
    lift = {model.tokenize('"', add_bos=False)[0]: 4.0}
    ask = [{"role": "user", "content": "Describe Romeo in JSON."}]
    formats = [{"type": "json_schema", "json_schema": {"name": "Character", "schema": schema}},
               {"type": "json_object", "schema": schema}]
    valid = 0
    for seed in range(8):
        reply = model.create_chat_completion(ask, max_tokens=300, temperature=0.8, seed=seed, logit_bias=lift,
                                             response_format=formats[seed % 2])["choices"][0]
        if reply["finish_reason"] == "stop":
            Character.model_validate_json(reply["message"]["content"])
            valid += 1
    assert valid >= 3, valid
    unique = {"type": "object", "properties": {"s": {"type": "array", "uniqueItems": True}}}
    with pytest.raises(ValueError, match="uniqueItems"):
        model.create_chat_completion(ask, response_format={"type": "json_object", "schema": unique})


def test_tool_calls_validate_as_the_pydantic_models(model: Model) -> None:
    """``tools`` from pydantic models (``model_json_schema``): a required call names a tool and its arguments
    validate as that tool's model in pydantic (the reference), streamed (piece by piece) or not; a conversation
    carrying the call and its result is answered; unusable tools are a ValueError naming the field."""
    pydantic = pytest.importorskip("pydantic")
    from typing import Literal

    class Weather(pydantic.BaseModel):
        city: Literal["Verona", "Mantua"]
        days: int = pydantic.Field(ge=1, le=7)

    class Time(pydantic.BaseModel):
        zone: Literal["CET", "UTC"]

    tools = [{"type": "function", "function": {"name": n, "parameters": m.model_json_schema()}}
             for n, m in [("weather", Weather), ("time", Time)]]
    # the model holds 512 positions and, trained on verse, fills JSON with line breaks and indents: those tokens
    # are banned, and the quote lifted
    runs = [c * k for c in [" ", "\n", "\t", "\r\n", "\n "] for k in range(1, 25)]
    spaces = {i for run in runs for i in model.tokenize(run, add_bos=False)}
    bias = {i: -100.0 for i in spaces if not model.detokenize([i]).strip()}
    bias[model.tokenize('"', add_bos=False)[0]] = 4.0
    ask = [{"role": "user", "content": "Weather?"}]
    calling = dict(max_tokens=120, temperature=0.8, logit_bias=bias, tools=tools, tool_choice="required")
    for seed in range(3):
        reply = model.create_chat_completion(ask, seed=seed, **calling)["choices"][0]
        assert reply["finish_reason"] == "tool_calls" and reply["message"]["content"] is None, reply
        (call,) = reply["message"]["tool_calls"]
        models = {"weather": Weather, "time": Time}
        models[call["function"]["name"]].model_validate_json(call["function"]["arguments"])
        # streamed: the call's id and name first, then its arguments piece by piece, adding up to the whole reply's
        chunks = list(model.create_chat_completion(ask, seed=seed, stream=True, **calling))
        first, *rest = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
        assert first["id"].startswith("call_") and first["type"] == "function", first
        assert first["function"] == {"name": call["function"]["name"], "arguments": ""}, first
        assert first["index"] == 0 and all(d["index"] == 0 and set(d["function"]) == {"arguments"} for d in rest), rest
        assert "".join(d["function"]["arguments"] for d in rest) == call["function"]["arguments"]
        assert len(rest) > 2, rest
        assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # an answer (tool_choice auto) streams as it is written, adding up to the whole reply's
    answers = 0
    auto = {**calling, "tool_choice": "auto", "max_tokens": 60}
    for seed in range(12):
        reply = model.create_chat_completion(ask, seed=seed, **auto)["choices"][0]
        if reply["finish_reason"] == "stop" and len(reply["message"]["content"] or "") >= 10:
            chunks = model.create_chat_completion(ask, seed=seed, stream=True, **auto)
            deltas = [c["choices"][0]["delta"].get("content") for c in chunks]
            deltas = [d for d in deltas if d]
            assert "".join(deltas) == reply["message"]["content"] and len(deltas) > 2, (deltas, reply)
            answers += 1
    assert answers, "no seed answered in text: the streamed answer went untested"
    # tool_choice "none" (or no tools) is plain text, streamed as it is written like a reply without tools
    plain = dict(max_tokens=24, temperature=0)
    text = model.create_chat_completion(ask, **plain)["choices"][0]["message"]["content"]
    for none in [dict(tools=tools, tool_choice="none"), dict(tools=[])]:
        chunks = model.create_chat_completion(ask, stream=True, **plain, **none)
        deltas = [d for d in (c["choices"][0]["delta"].get("content") for c in chunks) if d]
        assert "".join(deltas) == text and len(deltas) > 2, (none, deltas)
    history = ask + [{"role": "assistant", "content": None, "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": call["id"], "content": "Sunny."}]
    answer = model.create_chat_completion(history, seed=0, **{**calling, "tools": tools[:1], "tool_choice": "auto"})
    assert answer["choices"][0]["finish_reason"] in ("tool_calls", "stop", "length"), answer
    for bad, field in [
        ([{"type": "function", "function": {"name": "no spaces"}}], "tools\\[0\\].function.name"),
        ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
            "s": {"type": "array", "uniqueItems": True}}}}}], "uniqueItems"),
    ]:
        with pytest.raises(ValueError, match=field):
            model.create_chat_completion(ask, tools=bad)
    with pytest.raises(ValueError, match="tool_choice"):
        model.create_chat_completion(ask, tools=tools, tool_choice={"type": "function", "function": {"name": "f"}})
    with pytest.raises(ValueError, match="no tools to call"):
        model.create_chat_completion(ask, tool_choice="required")
    with pytest.raises(ValueError, match="tool_call_id"):
        model.create_chat_completion(ask + [{"role": "tool", "content": "x"}])


def test_logits_equal_the_cli_bit_for_bit(model: Model, tmp_path: Path) -> None:
    ids = model.tokenize("To be, or not to be, that is the question")
    out = tmp_path / "logits.npy"
    run_cli("logits", "-m", MODEL, "-t", str(THREADS), "--tokens", ",".join(map(str, ids)), "--all-positions", "-o", str(out))
    want = np.load(out)
    got = model.logits(ids)
    assert got.shape == (len(ids), model.n_vocab()) and got.dtype == np.float32
    assert np.array_equal(got, want)


def test_tokenize_equals_the_cli(model: Model) -> None:
    text = "Now is the winter of our discontent"
    assert model.tokenize(text) == json.loads(run_cli("tokenize", "-m", MODEL, "-p", text, "--json"))
    bare = model.tokenize(text.encode(), add_bos=False)
    assert bare == json.loads(run_cli("tokenize", "-m", MODEL, "-p", text, "--json", "--no-bos"))
    assert model.detokenize(bare) == text.encode()


def test_streamed_chunks_concatenate_to_the_whole_text(model: Model) -> None:
    whole = model("O", max_tokens=60, temperature=0)
    chunks = list(model("O", max_tokens=60, temperature=0, stream=True))
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == whole["choices"][0]["finish_reason"]
    assert len(chunks) > 5

    messages = [{"role": "user", "content": "Speak, my lord."}]
    whole = model.create_chat_completion(messages, max_tokens=40, temperature=0)
    assert whole["object"] == "chat.completion" and whole["choices"][0]["message"]["role"] == "assistant"
    chunks = list(model.create_chat_completion(messages, max_tokens=40, temperature=0, stream=True))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"] and text


def test_logprobs_are_the_log_softmax_of_the_models_logits(model: Model) -> None:
    """Each greedy token's log-probability against the log-softmax of ``logits`` (equal to the CLI's) at its
    position: the token is the most likely one and its value agrees within 1e-3 (the engine decodes step by step
    through its f16 KV cache, ``logits`` runs the whole sequence in one pass). Streamed chunks carry the same
    tokens and values; chat gives the same ones in its own shape."""
    out = model("ROMEO:", max_tokens=8, temperature=0, logprobs=3)
    choice = out["choices"][0]
    lp = choice["logprobs"]
    assert "".join(lp["tokens"]) == choice["text"] and len(lp["tokens"]) == out["usage"]["completion_tokens"]
    assert lp["text_offset"] == [sum(len(t) for t in lp["tokens"][:i]) for i in range(len(lp["tokens"]))]
    ids = model.tokenize("ROMEO:")
    for token, value, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        row = model.logits(ids)[-1].astype(np.float64)
        logsoftmax = row - (row.max() + np.log(np.exp(row - row.max()).sum()))
        best = int(np.argmax(row))
        assert model.detokenize([best]).decode() == token
        assert abs(logsoftmax[best] - value) < 1e-3, (token, value, logsoftmax[best])
        assert 3 <= len(top) <= 4 and top[token] == value == max(top.values()), top
        ids.append(best)

    chunks = list(model("ROMEO:", max_tokens=8, temperature=0, logprobs=3, stream=True))
    streamed = [
        (t, v) for c in chunks if c["choices"][0]["logprobs"]
        for t, v in zip(c["choices"][0]["logprobs"]["tokens"], c["choices"][0]["logprobs"]["token_logprobs"])
    ]
    assert streamed == list(zip(lp["tokens"], lp["token_logprobs"]))

    messages = [{"role": "user", "content": "Speak, my lord."}]
    chat = model.create_chat_completion(messages, max_tokens=6, temperature=0, logprobs=True, top_logprobs=2)
    content = chat["choices"][0]["logprobs"]["content"]
    assert bytes(b for t in content for b in t["bytes"]).decode() == chat["choices"][0]["message"]["content"]
    for t in content:
        assert [a["logprob"] for a in t["top_logprobs"]] == sorted((a["logprob"] for a in t["top_logprobs"]), reverse=True)
        assert t["top_logprobs"][0]["token"] == t["token"] and t["top_logprobs"][0]["logprob"] == t["logprob"]
    assert model("ROMEO:", max_tokens=4, temperature=0)["choices"][0]["logprobs"] is None


def test_chat_prompt_is_the_template_the_cli_renders(model: Model) -> None:
    """The chat reply is the completion of the prompt the model's template gives (as `bitnet serve` renders it)."""
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who art thou?"}]
    ids = model.native.chat_tokens(json.dumps(messages), None)
    text = model.detokenize(ids).decode()
    assert "Who art thou?" in text and "Be brief." in text
    chat = model.create_chat_completion(messages, max_tokens=24, temperature=0)
    completion = model(ids, max_tokens=24, temperature=0)
    assert chat["choices"][0]["message"]["content"] == completion["choices"][0]["text"]
    assert chat["usage"]["prompt_tokens"] == len(ids)


def test_stop_strings_end_the_text(model: Model) -> None:
    free = model("ROMEO:", max_tokens=48, temperature=0)["choices"][0]["text"]
    stop = free[10:14]
    cut = model("ROMEO:", max_tokens=48, temperature=0, stop=[stop, "\u2603"])
    assert cut["choices"][0]["text"] == free[: free.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    streamed = "".join(c["choices"][0]["text"] for c in model("ROMEO:", max_tokens=48, temperature=0, stop=stop, stream=True))
    assert streamed == cut["choices"][0]["text"]


def test_a_later_turn_reuses_the_cached_prefix(model: Model) -> None:
    first = model("KING LEAR:\nBlow, winds", max_tokens=8, temperature=0)
    prompt = "KING LEAR:\nBlow, winds" + first["choices"][0]["text"] + "\nFOOL:"
    again = model(prompt, max_tokens=8, temperature=0)
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    assert again["choices"][0]["text"] == cli_run(prompt, 8)["text"]


@pytest.mark.parametrize("cache_ram", [64, 0])
def test_a_conversation_comes_back_from_the_prompt_cache(cache_ram: int) -> None:
    """With one sequence, a chat the engine moved on from is copied back when it goes on (``cache_ram=0``: run again)."""
    one = Model(MODEL, threads=THREADS, parallel=1, cache_ram=cache_ram)
    first = one("JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?", max_tokens=8, temperature=0)
    one("Now is the winter of our discontent", max_tokens=8, temperature=0)
    prompt = "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?" + first["choices"][0]["text"] + "\nROMEO:"
    again = one(prompt, max_tokens=8, temperature=0)
    cached = again["usage"]["prompt_tokens_details"]["cached_tokens"]
    # the first prompt's tokens, less perhaps its last (merged with what follows it)
    assert (cached >= first["usage"]["prompt_tokens"] - 1) == (cache_ram > 0), cached
    assert again["choices"][0]["text"] == cli_run(prompt, 8)["text"]
    with pytest.raises(ValueError, match="cache_ram must be"):
        Model(MODEL, cache_ram=-2)


def test_properties(model: Model) -> None:
    meta = model.metadata
    assert meta["general.architecture"] == "bitnet-b1.58"
    assert model.n_vocab() == len(meta["tokenizer.ggml.tokens"])
    assert model.n_ctx() == meta["bitnet-b1.58.context_length"]
    assert Llama is Model and bitnet_burn.__version__


def test_bench_reports_speeds(model: Model) -> None:
    b = model.bench(prompt_tokens=16, gen_tokens=8, repetitions=2)
    assert b["prefill_tok_s"] > 0 and b["decode_tok_s"] > 0 and b["threads"] == THREADS


def test_threads_sharing_one_model_get_what_they_get_alone(model: Model) -> None:
    alone = {p: model(p, max_tokens=32, temperature=0)["choices"][0]["text"] for p in PROMPTS}
    results: dict = {}

    def worker(p: str) -> None:
        results[p] = model(p, max_tokens=32, temperature=0)["choices"][0]["text"]

    threads = [threading.Thread(target=worker, args=(p,)) for p in PROMPTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == alone


def test_two_models_in_two_threads(model: Model) -> None:
    other = Model(MODEL, threads=1)
    want = model("O", max_tokens=24, temperature=0)["choices"][0]["text"]
    results = []
    threads = [
        threading.Thread(target=lambda m=m: results.append(m("O", max_tokens=24, temperature=0)["choices"][0]["text"]))
        for m in (model, other)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [want, want]


def test_bad_paths_and_files_raise(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no-such.gguf"):
        Model(str(tmp_path / "no-such.gguf"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match="magic|GGUF"):
        Model(str(junk))
    data = Path(MODEL).read_bytes()
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        Model(str(truncated))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(head="fp4"), "head"),
        (dict(backend="tpu"), "backend"),
        (dict(act="int4"), "act"),
        (dict(parallel=0), "parallel"),
        (dict(cache_type="q4_0"), "cache_type"),
        (dict(threads=-1), "threads"),
    ],
)
def test_bad_model_arguments_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Model(MODEL, **kwargs)


def test_bad_request_arguments_raise(model: Model) -> None:
    with pytest.raises(ValueError, match="temperature"):
        model("O", temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        model("O", top_p=0)
    with pytest.raises(ValueError, match="prompt is empty"):
        model("")  # the shipped model adds no BOS to start from
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model([1, model.n_vocab()])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.logits([-1])
    with pytest.raises(ValueError, match="context holds"):
        model("O " * model.n_ctx())
    with pytest.raises(ValueError, match="messages"):
        model.create_chat_completion([])
    with pytest.raises(ValueError, match="role"):
        model.create_chat_completion([{"content": "hi"}])
    with pytest.raises(ValueError, match="stop"):
        model("O", stop=[3])
    # The model still works after every refusal.
    assert model("O", max_tokens=4, temperature=0)["usage"]["completion_tokens"] == 4


def test_from_pretrained_reads_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--shakespeare"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(MODEL, repo / "snapshots" / commit / "model.gguf")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: the cache must answer
    m = Model.from_pretrained("someone/shakespeare", "model.gguf", threads=1)
    assert m("ROMEO:", max_tokens=16, temperature=0)["choices"][0]["text"] == cli_run("ROMEO:", 16)["text"]
    with pytest.raises(ValueError):
        Model.from_pretrained("someone/shakespeare", "absent.gguf")


def test_ctrl_c_interrupts_a_waiting_generation() -> None:
    """SIGINT while the main thread waits for text (its request queued behind long ones) raises
    KeyboardInterrupt at once, not when the text arrives."""
    script = textwrap.dedent(
        f"""
        import os, signal, threading, time
        from bitnet_burn import Model
        # Python maps SIGINT to KeyboardInterrupt only if it was not ignored when the interpreter started, and a
        # shell ignores it for the commands it starts in the background (as a CI runner may start this one).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        m = Model({MODEL!r}, threads=1, parallel=1)
        ids = m.tokenize("ROMEO:")
        def sampling(n):
            return dict(max_tokens=n, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                        presence_penalty=0.0, frequency_penalty=0.0, seed=0, stop=[], ignore_eos=True)
        ahead = [m.native.submit(ids, sampling(m.n_ctx() - len(ids))) for _ in range(12)]
        run = m.native.submit(ids, sampling(4))
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        start = time.monotonic()
        try:
            for _ in run:
                pass
            print("finished", time.monotonic() - start, flush=True)
        except KeyboardInterrupt:
            print("interrupted", time.monotonic() - start, flush=True)
        os._exit(0)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    what, seconds = out.stdout.split()
    assert what == "interrupted", out.stdout + out.stderr
    assert float(seconds) < 1.5, out.stdout
