"""Type stubs of the extension module (bitnet-py/src): the engine behind :mod:`bitnet_burn`."""

from typing import Any, Dict, Iterator, List, Optional, Tuple, TypedDict

__version__: str

class _SamplingRequired(TypedDict):
    max_tokens: int
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repeat_penalty: float
    presence_penalty: float
    frequency_penalty: float
    seed: int
    stop: List[str]
    ignore_eos: bool

class Sampling(_SamplingRequired, total=False):
    logprobs: Optional[int]
    logit_bias: List[Tuple[int, float]]
    response_format: Optional[str]
    tools: Optional[str]

class Result(TypedDict):
    ids: List[int]
    text: str
    finish_reason: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    first_token_s: float
    elapsed_s: float

class Stream(Iterator[str]):
    """The pieces of text of one queued generation."""
    def __iter__(self) -> "Stream": ...
    def __next__(self) -> str: ...
    def take_logprobs(self) -> List[Tuple[bytes, float, List[Tuple[bytes, float]]]]:
        """The log-probabilities of the tokens generated since the last call (token bytes, logprob, the most
        likely tokens first), when the request asked for them."""
    def cancel(self) -> None:
        """Stops the generation now (its sequence is freed)."""
    def result(self) -> Optional[Result]:
        """How the generation ended, once the stream is exhausted."""

class NativeModel:
    """A loaded model and the batched engine that generates with it."""
    path: Any
    backend: str
    threads: int
    n_ctx: int
    n_vocab: int
    parallel: int
    chat_template: str
    def __init__(
        self,
        path: str,
        threads: int = 0,
        backend: str = "cpu",
        head: str = "int8",
        act: str = "int8",
        ctx: int = 0,
        parallel: int = 1,
        cache_type: str = "f16",
        cache_ram: int = 2048,
    ) -> None: ...
    def tokenize(self, text: str, add_bos: bool) -> List[int]: ...
    def detokenize(self, ids: List[int]) -> str: ...
    def chat_tokens(self, messages: str, tools: Optional[str]) -> List[int]: ...
    def logits(self, ids: List[int]) -> bytes: ...
    def submit(self, ids: List[int], sampling: Sampling) -> Stream: ...
    def metadata(self) -> Optional[Dict[str, Any]]: ...

class ReplyReader:
    """A reply written under tools, read as it is written."""

    def __init__(self) -> None: ...
    def push(self, text: str) -> List[Tuple[str, int, str]]: ...
    def reply(self) -> Tuple[Optional[str], List[Tuple[str, str]]]: ...
    def answering(self) -> bool: ...
