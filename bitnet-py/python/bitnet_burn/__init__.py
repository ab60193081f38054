"""BitNet b1.58 (ternary-weight) language models from Python, on bitnet-burn's engine.

The API is shaped like llama-cpp-python's ``Llama`` (``Llama`` is an alias of :class:`Model`), so code written
for it ports by changing the import::

    from bitnet_burn import Model
    model = Model("ggml-model-i2_s.gguf")
    print(model("Once upon a time", max_tokens=32)["choices"][0]["text"])

Every call that runs the model releases the GIL. Generation runs on the engine's own thread: Python threads that
share a model (``parallel=N``) are decoded together in the same passes over the weights.
"""

from __future__ import annotations

import codecs
import itertools
import json
import math
import os
import random
import sys
import time
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from ._native import NativeModel, ReplyReader, Stream, __version__, check_grammar

__all__ = ["Model", "Llama", "LlamaGrammar", "__version__"]

Prompt = Union[str, Sequence[int]]


class Model:
    """A BitNet model: a GGUF file, a transformers checkpoint directory, or a Hub file ``hf:OWNER/NAME/FILE``.

    ``threads``: CPU threads (0: one per core; more than the cores are capped with a warning).
    ``backend``: ``"cpu"``, or ``"wgpu"``/``"cuda"`` in a build with those features.
    ``head``: ``"int8"`` (default, fast) or ``"float"`` (the reference numerics) for the output head.
    ``act``: BitLinear's activation numerics: ``"int8"`` (BitNet's), ``"float"`` or ``"q8k"`` (llama.cpp's).
    ``ctx``: positions per sequence, prompt and reply together (0: the model's context).
    ``parallel``: sequences decoded together (threads sharing the model); each has ``ctx`` positions.
    ``cache_type``: what the KV cache stores: ``"f16"`` (default, as llama.cpp: half the memory), ``"q8_0"``
    (about half of f16's) or ``"f32"``.
    ``cache_ram``: MiB of prompts kept after their sequence moves on to another conversation, copied back when a
    prompt continues one instead of run again (-1: no limit, 0: none; llama-cpp-python's ``LlamaRAMCache`` holds
    2 GiB too, but only after ``set_cache``).
    ``n_ctx`` and ``n_threads`` are accepted as llama-cpp-python spells them.
    """

    def __init__(
        self,
        model_path: Union[str, "os.PathLike[str]"],
        *,
        threads: int = 0,
        backend: str = "cpu",
        head: str = "int8",
        act: str = "int8",
        ctx: int = 0,
        parallel: int = 1,
        cache_type: str = "f16",
        cache_ram: int = 2048,
        n_ctx: Optional[int] = None,
        n_threads: Optional[int] = None,
        verbose: bool = False,
    ) -> None:
        threads = _non_negative("threads", n_threads if n_threads is not None else threads)
        ctx = _non_negative("ctx", n_ctx if n_ctx is not None else ctx)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if threads > cores:
            warnings.warn(f"threads={threads} is more than the {cores} cores; using {cores}", stacklevel=2)
            threads = cores
        self._native: Optional[NativeModel] = NativeModel(
            os.fspath(model_path), threads, backend, head, act, ctx, parallel, cache_type, cache_ram
        )
        self.model_path = str(self._native.path)
        self._metadata: Optional[Dict[str, Any]] = None
        if verbose:
            n = self._native
            print(
                f"bitnet_burn: {self.model_path} on {n.backend}, {n.threads} threads, {n.parallel} x {n.n_ctx} "
                f"positions, chat template {n.chat_template}",
                file=sys.stderr,
            )

    @classmethod
    def from_pretrained(cls, repo_id: str, filename: str, **kwargs: Any) -> "Model":
        """The file ``filename`` of the Hub repository ``repo_id``, from the Hugging Face cache (downloaded into it
        the first time; ``HF_HOME``, ``HF_ENDPOINT`` and ``HF_TOKEN`` apply)."""
        return cls(f"hf:{repo_id}/{filename}", **kwargs)

    @property
    def native(self) -> NativeModel:
        """The loaded engine (an error once :meth:`close` ran)."""
        if self._native is None:
            raise ValueError("the model is closed")
        return self._native

    def close(self) -> None:
        """Stops the engine and frees the model (generations in progress finish first)."""
        self._native = None

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def n_ctx(self) -> int:
        """Positions per sequence (prompt and reply)."""
        return self.native.n_ctx

    def n_vocab(self) -> int:
        """Vocabulary size."""
        return self.native.n_vocab

    @property
    def metadata(self) -> Dict[str, Any]:
        """The GGUF metadata (key to value, arrays as lists), or a checkpoint's config.json."""
        if self._metadata is None:
            found = self.native.metadata()
            if found is None:
                with open(os.path.join(self.model_path, "config.json"), encoding="utf-8") as f:
                    found = json.load(f)
            self._metadata = found
        return self._metadata

    def tokenize(self, text: Union[str, bytes], add_bos: bool = True) -> List[int]:
        """Token ids of ``text`` (``str`` or UTF-8 ``bytes``), with BOS first when ``add_bos`` and the model wants
        one."""
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return self.native.tokenize(text, add_bos)

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        """The UTF-8 text of ``tokens``, as llama-cpp-python returns it (``bytes``)."""
        return self.native.detokenize(self._ids(tokens)).encode("utf-8")

    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        """The logits of every position of ``tokens`` (a fresh context), ``float32 [len(tokens), n_vocab]``."""
        ids = self._ids(tokens)
        if not ids:
            raise ValueError("logits needs at least one token")
        raw = self.native.logits(ids)
        return np.frombuffer(raw, dtype="<f4").reshape(len(ids), self.n_vocab())

    def __call__(
        self,
        prompt: Prompt,
        max_tokens: Optional[int] = 16,
        temperature: float = 0.8,
        top_p: float = 0.95,
        min_p: float = 0.05,
        top_k: int = 40,
        repeat_penalty: float = 1.0,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        seed: Optional[int] = None,
        stop: Union[None, str, List[str]] = None,
        stream: bool = False,
        logprobs: Optional[int] = None,
        logit_bias: Optional[Dict[int, float]] = None,
        grammar: Union[None, str, "LlamaGrammar"] = None,
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """Continues ``prompt`` (text, or token ids fed as they are): an OpenAI ``text_completion``, or with
        ``stream=True`` an iterator of its chunks. ``max_tokens`` None or 0: until the context is full.
        ``logprobs``: each generated token's log-probability with that many of the most likely tokens (the
        log-softmax of the model's logits, before temperature and penalties). ``logit_bias``: token id to a value
        added to its logit before sampling (-100 bans it). ``grammar`` (a ``LlamaGrammar`` or GBNF text): the
        reply is held to its language (``LlamaGrammar.from_json_schema``: it is an object the schema allows). An empty text runs from BOS alone where the model adds one, as
        llama-cpp-python does."""
        if isinstance(prompt, str):
            ids = self.tokenize(prompt)
        else:
            ids = self._ids(prompt)
        return self._reply(
            ids, False, stream, _sampling(
                self._room(ids, max_tokens), temperature, top_p, min_p, top_k, repeat_penalty,
                presence_penalty, frequency_penalty, seed, stop, logprobs=logprobs,
                logit_bias=self._bias(logit_bias), **_held(grammar),
            )
        )

    create_completion = __call__

    def create_chat_completion(
        self,
        messages: List[Dict[str, Any]],
        temperature: float = 0.2,
        top_p: float = 0.95,
        top_k: int = 40,
        min_p: float = 0.05,
        stream: bool = False,
        stop: Union[None, str, List[str]] = None,
        seed: Optional[int] = None,
        max_tokens: Optional[int] = None,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repeat_penalty: float = 1.0,
        logprobs: Optional[bool] = None,
        top_logprobs: Optional[int] = None,
        logit_bias: Optional[Dict[int, float]] = None,
        response_format: Optional[Dict[str, Any]] = None,
        tools: Optional[List[Dict[str, Any]]] = None,
        tool_choice: Union[None, str, Dict[str, Any]] = None,
        parallel_tool_calls: Optional[bool] = None,
        grammar: Union[None, str, "LlamaGrammar"] = None,
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """Replies to ``messages`` (``[{"role": ..., "content": ...}]``) with the model's chat template: an OpenAI
        ``chat.completion``, or with ``stream=True`` an iterator of ``chat.completion.chunk``. ``logprobs=True``:
        each generated token's log-probability, with ``top_logprobs`` of the most likely tokens; ``logit_bias`` as
        the completion's; ``response_format={"type": "json_object"}``: the reply is one JSON object (JSON mode),
        ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}`` (or llama-cpp-python's
        ``{"type": "json_object", "schema": {...}}``): one object that the schema allows (the subset the README
        lists; others raise ``ValueError``). ``tools`` (OpenAI's ``[{"type": "function", "function": {"name",
        "description", "parameters"}}]``), ``tool_choice`` (``"auto"``, ``"required"``, ``"none"`` or
        ``{"type": "function", "function": {"name": ...}}``) and ``parallel_tool_calls``: the reply calls tools
        (``message.tool_calls``, ``finish_reason`` ``"tool_calls"``) or answers, as the server's; ``messages`` may
        hold earlier ``tool_calls`` and ``tool`` results. Streamed, a text answer comes as it is written, a call
        whole when the reply ends. ``grammar`` as the completion's (not with ``response_format`` or tools)."""
        calling = _calling(tools, tool_choice, parallel_tool_calls)
        try:
            conversation = json.dumps(messages)
        except (TypeError, ValueError) as e:
            raise ValueError(f"messages: {e}") from e
        ids = self.native.chat_tokens(conversation, calling)
        # (no tools, or "none", ask for plain text: the reply is not held to the tools' format)
        return self._reply(
            ids, True, stream, _sampling(
                self._room(ids, max_tokens), temperature, top_p, min_p, top_k, repeat_penalty,
                presence_penalty, frequency_penalty, seed, stop,
                logprobs=(top_logprobs or 0) if logprobs else None, logit_bias=self._bias(logit_bias),
                tools=calling, **_held(grammar, response_format),
            ), bool(tools) and tool_choice != "none",
        )

    def _reply(
        self, ids: List[int], chat: bool, stream: bool, sampling: Dict[str, Any], tools: bool = False
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """Submits a request (``tools``: its reply is held to the tools' format): its whole reply, or an iterator
        of its chunks."""
        run = self.native.submit(ids, sampling)
        reply = _Reply("chatcmpl" if chat else "cmpl", self.model_path, sampling["logprobs"] is not None, tools)
        if stream:
            return reply.chat_chunks(run) if chat else reply.completion_chunks(run)
        result, tokens = _wait(run)
        return reply.chat(result, tokens) if chat else reply.completion(result, tokens)

    def bench(self, prompt_tokens: int = 128, gen_tokens: int = 64, repetitions: int = 3) -> Dict[str, Any]:
        """Prefill and decode tokens/s through this Python API (greedy, end-of-text ignored), as ``bitnet bench``
        measures them: the mean and standard deviation over ``repetitions`` distinct prompts."""
        if prompt_tokens < 1 or gen_tokens < 2 or repetitions < 1:
            raise ValueError("bench needs prompt_tokens >= 1, gen_tokens >= 2 and repetitions >= 1")
        vocab = self.n_vocab()
        prefill, decode = [], []
        for rep in range(repetitions):
            first = (rep + 1) * prompt_tokens
            ids = [((first + i) * 7919 + 13) % vocab for i in range(prompt_tokens)]
            sampling = _sampling(gen_tokens, 0.0, 1.0, 0.0, 0, 1.0, 0.0, 0.0, 0, None, ignore_eos=True)
            start = time.perf_counter()
            result, _ = _wait(self.native.submit(ids, sampling))
            elapsed = time.perf_counter() - start
            prefill.append(prompt_tokens / result["first_token_s"])
            decode.append((result["completion_tokens"] - 1) / (elapsed - result["first_token_s"]))
        return {
            "model": self.model_path,
            "backend": self.native.backend,
            "threads": self.native.threads,
            "prompt_tokens": prompt_tokens,
            "gen_tokens": gen_tokens,
            "repetitions": repetitions,
            "prefill_tok_s": float(np.mean(prefill)),
            "prefill_tok_s_std": float(np.std(prefill)),
            "decode_tok_s": float(np.mean(decode)),
            "decode_tok_s_std": float(np.std(decode)),
        }

    def _ids(self, tokens: Sequence[int]) -> List[int]:
        ids = [int(t) for t in tokens]
        vocab = self.n_vocab()
        for t in ids:
            if not 0 <= t < vocab:
                raise ValueError(f"token id {t} is outside the vocabulary (size {vocab})")
        return ids

    def _bias(self, logit_bias: Optional[Dict[int, float]]) -> List[tuple]:
        """``logit_bias`` as (id, bias) pairs, each id in the vocabulary and each bias finite."""
        pairs = []
        for token, bias in (logit_bias or {}).items():
            (token,) = self._ids([token])
            if not math.isfinite(bias):
                raise ValueError(f"logit_bias: {bias!r} for token {token} is not a finite number")
            pairs.append((token, float(bias)))
        return pairs

    def _room(self, ids: List[int], max_tokens: Optional[int]) -> int:
        room = self.n_ctx() - len(ids)
        if room < 1:
            raise ValueError(
                f"the prompt has {len(ids)} tokens; the context holds {self.n_ctx()} positions "
                "(prompt and generated tokens)"
            )
        if max_tokens is None or max_tokens <= 0:
            return room
        return min(int(max_tokens), room)


Llama = Model


def _non_negative(name: str, value: int) -> int:
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, not {value}")
    return int(value)


def _sampling(
    max_tokens: int,
    temperature: float,
    top_p: float,
    min_p: float,
    top_k: int,
    repeat_penalty: float,
    presence_penalty: float,
    frequency_penalty: float,
    seed: Optional[int],
    stop: Union[None, str, List[str]],
    ignore_eos: bool = False,
    logprobs: Optional[int] = None,
    logit_bias: Sequence[tuple] = (),
    response_format: Optional[str] = None,
    grammar: Optional[str] = None,
    tools: Optional[str] = None,
) -> Dict[str, Any]:
    """The native request's sampling settings, checked."""
    checks = [
        ("temperature", temperature >= 0),
        ("top_p", 0 < top_p <= 1),
        ("min_p", 0 <= min_p <= 1),
        ("top_k", top_k >= 0),
        ("repeat_penalty", repeat_penalty > 0),
        ("presence_penalty", -2 <= presence_penalty <= 2),
        ("frequency_penalty", -2 <= frequency_penalty <= 2),
    ]
    for name, ok in checks:
        if not ok:
            raise ValueError(f"{name}={locals()[name]!r} is out of range")
    if seed is None:
        seed = random.SystemRandom().getrandbits(63)
    if seed < 0:
        raise ValueError(f"seed must be 0 or more, not {seed}")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if not all(isinstance(s, str) for s in stops):
        raise ValueError("stop must be a string or a list of strings")
    return {
        "max_tokens": max_tokens,
        "temperature": float(temperature),
        "top_k": int(top_k),
        "top_p": float(top_p),
        "min_p": float(min_p),
        "repeat_penalty": float(repeat_penalty),
        "presence_penalty": float(presence_penalty),
        "frequency_penalty": float(frequency_penalty),
        "seed": int(seed),
        "stop": stops,
        "ignore_eos": ignore_eos,
        "logprobs": None if logprobs is None else _non_negative("logprobs", logprobs),
        "logit_bias": list(logit_bias),
        "response_format": response_format,
        "grammar": grammar,
        "tools": tools,
    }


class LlamaGrammar:
    """A GBNF grammar (llama.cpp's format) a reply is held to, as llama-cpp-python's ``LlamaGrammar``: made with
    ``from_string`` or ``from_file``, checked at once (``ValueError`` naming the line and column of a fault); or
    ``from_json_schema``: the objects a JSON Schema allows."""

    def __init__(self, grammar: str) -> None:
        check_grammar(grammar)
        self.grammar: Optional[str] = grammar
        self.schema: Optional[Dict[str, Any]] = None

    @classmethod
    def from_json_schema(cls, json_schema: str, verbose: bool = True) -> "LlamaGrammar":
        """The objects the JSON Schema ``json_schema`` (text) allows, held by the schema engine
        ``response_format`` uses (the subset the README lists; other keywords raise ``ValueError`` when used)
        rather than written out as GBNF."""
        grammar = cls.__new__(cls)
        grammar.grammar, grammar.schema = None, json.loads(json_schema)
        return grammar

    @classmethod
    def from_string(cls, grammar: str, verbose: bool = True) -> "LlamaGrammar":
        """The grammar in ``grammar`` (``verbose`` is accepted for llama-cpp-python's signature)."""
        return cls(grammar)

    @classmethod
    def from_file(cls, file: Union[str, os.PathLike], verbose: bool = True) -> "LlamaGrammar":
        """The grammar in the file ``file`` (llama.cpp's ``grammars/*.gbnf``)."""
        with open(file, encoding="utf-8") as f:
            return cls(f.read())


def _held(
    grammar: Union[None, str, LlamaGrammar], response_format: Optional[Dict[str, Any]] = None
) -> Dict[str, Optional[str]]:
    """``grammar`` and ``response_format`` as the native request's ``grammar`` (GBNF text) and
    ``response_format`` (JSON): a schema grammar is a ``json_schema`` response format."""
    if isinstance(grammar, LlamaGrammar) and grammar.schema is not None:
        if response_format is not None:
            raise ValueError("grammar: give a grammar or a response_format, not both")
        response_format = {"type": "json_schema", "json_schema": {"name": "grammar", "schema": grammar.schema}}
        grammar = None
    if isinstance(grammar, LlamaGrammar):
        grammar = grammar.grammar
    elif grammar is not None and not isinstance(grammar, str):
        raise ValueError(f"grammar must be a LlamaGrammar or a string, not {type(grammar).__name__}")
    return {"grammar": grammar, "response_format": _response_format(response_format)}


def _response_format(response_format: Optional[Dict[str, Any]]) -> Optional[str]:
    """``response_format`` as JSON for the native side, which checks it as the server does; None for text."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise ValueError(f"response_format must be a dict, not {type(response_format).__name__}")
    return json.dumps(response_format)


def _wait(run: Stream) -> tuple:
    """Runs a generation to its end: its result (the text whole, up to any stop string) and its tokens'
    log-probabilities (if asked for)."""
    tokens = []
    for _ in run:
        tokens += run.take_logprobs()
    return run.result(), tokens + run.take_logprobs()


def _calling(
    tools: Optional[List[Dict[str, Any]]], tool_choice: Union[None, str, Dict[str, Any]], parallel: Optional[bool]
) -> Optional[str]:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls`` as JSON for the native side, which checks them as the
    server does; None when there are no tools and no call is asked for."""
    if tools is None and tool_choice in (None, "auto", "none"):
        return None
    if parallel is not None and not isinstance(parallel, bool):
        raise ValueError(f"parallel_tool_calls must be a bool, not {type(parallel).__name__}")
    try:
        return json.dumps({"tools": tools, "tool_choice": tool_choice, "parallel_tool_calls": parallel})
    except (TypeError, ValueError) as e:
        raise ValueError(f"tools: {e}") from e


class _Reply:
    """What every object of one reply shares, and the OpenAI shapes llama-cpp-python returns."""

    _numbers = itertools.count(1)

    def __init__(self, prefix: str, model: str, logprobs: bool, tools: bool = False) -> None:
        self.id = f"{prefix}-{os.getpid()}-{next(_Reply._numbers)}"
        self.tools = tools
        self.created = int(time.time())
        self.model = model
        self.logprobs = logprobs
        # characters of the completion so far, for `text_offset` (a token inside a character waits for its end)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._chars = 0

    def _object(self, kind: str, choice: Dict[str, Any]) -> Dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": [choice]}

    @staticmethod
    def _usage(result: Dict[str, Any]) -> Dict[str, Any]:
        return {
            "prompt_tokens": result["prompt_tokens"],
            "completion_tokens": result["completion_tokens"],
            "total_tokens": result["prompt_tokens"] + result["completion_tokens"],
            "prompt_tokens_details": {"cached_tokens": result["cached_tokens"]},
        }

    def _completion_logprobs(self, tokens: List[tuple]) -> Optional[Dict[str, Any]]:
        """The legacy ``logprobs`` lists; each ``top_logprobs`` map holds the generated token too, as OpenAI's."""
        if not self.logprobs:
            return None
        text = lambda b: b.decode("utf-8", "replace")  # noqa: E731
        offsets = []
        for token, _, _ in tokens:
            offsets.append(self._chars)
            self._chars += len(self._decoder.decode(token))
        tops = []
        for tok, lp, top in tokens:
            most = {}
            for t, v in [*top, (tok, lp)]:
                most.setdefault(text(t), v)
            tops.append(most)
        return {
            "tokens": [text(t) for t, _, _ in tokens],
            "text_offset": offsets,
            "token_logprobs": [lp for _, lp, _ in tokens],
            "top_logprobs": tops,
        }

    def _chat_logprobs(self, tokens: List[tuple]) -> Optional[Dict[str, Any]]:
        """Chat's ``logprobs.content``: each token with its bytes and its ``top_logprobs``."""
        if not self.logprobs:
            return None
        entry = lambda t, lp: {"token": t.decode("utf-8", "replace"), "logprob": lp, "bytes": list(t)}  # noqa: E731
        content = [
            {**entry(tok, lp), "top_logprobs": [entry(t, v) for t, v in top]} for tok, lp, top in tokens
        ]
        return {"content": content, "refusal": None}

    def completion(self, result: Dict[str, Any], tokens: List[tuple]) -> Dict[str, Any]:
        choice = {
            "text": result["text"],
            "index": 0,
            "logprobs": self._completion_logprobs(tokens),
            "finish_reason": result["finish_reason"],
        }
        out = self._object("text_completion", choice)
        out["usage"] = self._usage(result)
        return out

    def _call_id(self, i: int) -> str:
        """The id of the reply's ``i``th tool call."""
        return f"call_{self.id.rsplit('-', 1)[-1]}_{i}"

    def _message(self, text: str, finish: str, delta: bool) -> tuple:
        """A chat reply's message (a stream's delta when ``delta``) and finish reason: with tools, its calls as
        ``tool_calls`` (finish reason ``tool_calls``, or ``length`` when cut short) or its answer as ``content``."""
        content, calls = text, []
        if self.tools:
            reader = ReplyReader()
            reader.push(text)
            content, calls = reader.reply()
        if not calls:
            return {"role": "assistant", "content": content}, finish
        tool_calls = [
            {"id": self._call_id(i), "type": "function", "function": {"name": name, "arguments": arguments}}
            for i, (name, arguments) in enumerate(calls)
        ]
        if delta:
            for i, call in enumerate(tool_calls):
                call["index"] = i
        # (cut by the token limit, the last call's arguments are cut too: the finish reason stays "length")
        return {"role": "assistant", "content": None, "tool_calls": tool_calls}, finish if finish == "length" else "tool_calls"

    def chat(self, result: Dict[str, Any], tokens: List[tuple]) -> Dict[str, Any]:
        message, finish = self._message(result["text"], result["finish_reason"], False)
        choice = {
            "index": 0,
            "message": message,
            "logprobs": self._chat_logprobs(tokens),
            "finish_reason": finish,
        }
        out = self._object("chat.completion", choice)
        out["usage"] = self._usage(result)
        return out

    def completion_chunks(self, run: Stream) -> Iterator[Dict[str, Any]]:
        kind = "text_completion"
        try:
            for piece in run:
                lp = self._completion_logprobs(run.take_logprobs())
                yield self._object(kind, {"text": piece, "index": 0, "logprobs": lp, "finish_reason": None})
            result, rest = run.result(), run.take_logprobs()
            lp = self._completion_logprobs(rest) if rest else None
            yield self._object(kind, {"text": "", "index": 0, "logprobs": lp, "finish_reason": result["finish_reason"]})
        finally:
            run.cancel()

    def chat_chunks(self, run: Stream) -> Iterator[Dict[str, Any]]:
        kind = "chat.completion.chunk"
        try:
            yield self._object(kind, {"index": 0, "delta": {"role": "assistant"}, "logprobs": None, "finish_reason": None})
            if self.tools and not self.logprobs:
                # the reply read as it is written: its answer, and each call (its name, then its arguments)
                reader = ReplyReader()
                for piece in run:
                    for part, index, text in reader.push(piece):
                        if part == "answer":
                            delta = {"content": text}
                        elif part == "call":
                            call = {"index": index, "id": self._call_id(index), "type": "function"}
                            delta = {"tool_calls": [{**call, "function": {"name": text, "arguments": ""}}]}
                        else:
                            delta = {"tool_calls": [{"index": index, "function": {"arguments": text}}]}
                        yield self._object(kind, {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None})
                result = run.result()
                content, calls = reader.reply()
                if content and not reader.answering():
                    # cut short before it was an answer or a call: the text as it is
                    delta = {"content": content}
                    yield self._object(kind, {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None})
                finish = result["finish_reason"]
                if calls and finish != "length":  # (cut by the token limit, the last call's arguments are cut too)
                    finish = "tool_calls"
                yield self._object(kind, {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish})
                return
            if self.tools:
                # with logprobs: the reply whole once it is, with the log-probabilities of its tokens
                tokens = []
                for _ in run:
                    tokens += run.take_logprobs()
                result = run.result()
                delta, finish = self._message(result["text"], result["finish_reason"], True)
                del delta["role"]
                lp = self._chat_logprobs(tokens + run.take_logprobs())
                yield self._object(kind, {"index": 0, "delta": delta, "logprobs": lp, "finish_reason": None})
                yield self._object(kind, {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish})
                return
            for piece in run:
                lp = self._chat_logprobs(run.take_logprobs())
                yield self._object(kind, {"index": 0, "delta": {"content": piece}, "logprobs": lp, "finish_reason": None})
            result, rest = run.result(), run.take_logprobs()
            lp = self._chat_logprobs(rest) if rest else None
            yield self._object(kind, {"index": 0, "delta": {}, "logprobs": lp, "finish_reason": result["finish_reason"]})
        finally:
            run.cancel()
