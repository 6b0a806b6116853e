"""The Backend base class and the request/response types every backend speaks.

A backend turns a prepared request into text. ``prepare`` renders the prompt and counts its tokens with the
model's own tokenizer (the pre-process stage calls it, so the context-window check happens before any
generation); ``generate`` and ``stream`` produce the answer; ``embed`` turns texts into vectors.
Backends raise only :mod:`llmdock.errors` exceptions, never HTTP ones.
"""

from __future__ import annotations

import asyncio
from abc import ABC
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from llmdock.backends.operations import TEXT_OPERATIONS, TextOperation
from llmdock.config import Settings, config_error_from_pydantic
from llmdock.errors import BackendUnavailable, ContextWindowExceeded, InvalidRequest, Overloaded

if TYPE_CHECKING:
    from llmdock.backends.logprobs import Logprobs, TokenLogprob

TextOperationName = Literal["chat", "completion"]
T = TypeVar("T")


@dataclass(slots=True)
class SamplingParams:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    def with_defaults(self, defaults: dict[str, Any]) -> SamplingParams:
        """Fill unset values from a model's configured defaults."""
        for name, value in defaults.items():
            if getattr(self, name, None) is None:
                setattr(self, name, value)
        return self


@dataclass(slots=True, init=False)
class GenerationRequest:
    """What the generate stage asks of a backend. ``prepare`` fills in the prompt fields.

    ``op`` is the operation's codec (backends/operations.py), found from its name once, when the request is
    made: what differs between chat and completion is asked of it, never decided by comparing names.
    ``__init__`` is written out (not a dataclass ``__post_init__``) because every gateway request makes one:
    the codec lookup then costs no extra call.
    """

    operation: TextOperationName
    params: SamplingParams
    messages: list[dict[str, Any]] | None
    prompt: str | None
    # Filled by Backend.prepare:
    prompt_text: str
    prompt_tokens: list[int] | None
    n_prompt_tokens: int
    stop: list[str]
    # A GBNF grammar the output must follow (set by structured-output handling). Backends that can
    # constrain decoding (llamacpp) enforce it; others ignore it and the post-process stage validates.
    grammar: str | None
    extra: dict[str, Any]  # extra body fields passed to an upstream as-is
    route: dict[str, Any]  # the router's bookkeeping; never sent anywhere
    # Log-probabilities (backends/logprobs.py): None = not asked; else how many most likely alternatives
    # to give per token (0..20). ``echo``: the prompt's tokens too (text completions).
    logprobs: int | None
    echo: bool
    op: TextOperation = field(repr=False, compare=False)

    def __init__(
        self,
        operation: TextOperationName,
        params: SamplingParams,
        messages: list[dict[str, Any]] | None = None,
        prompt: str | None = None,
        *,
        grammar: str | None = None,
        extra: dict[str, Any] | None = None,
        route: dict[str, Any] | None = None,
        logprobs: int | None = None,
        echo: bool = False,
    ) -> None:
        self.operation = operation
        self.op = TEXT_OPERATIONS[operation]
        self.params = params
        self.messages = messages
        self.prompt = prompt
        self.prompt_text = ""
        self.prompt_tokens = None
        self.n_prompt_tokens = 0
        self.stop = []
        self.grammar = grammar
        self.extra = {} if extra is None else extra
        self.route = {} if route is None else route
        self.logprobs = logprobs
        self.echo = echo


@dataclass(slots=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"
    # OpenAI-shaped tool calls ({id, type, function: {name, arguments}}), set by the structured stage; ``text``
    # then holds the calls in llmdock's canonical form ([{"name", "arguments"}]) for traces and caches.
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: Logprobs | None = None  # when the request asked for them (GenerationRequest.logprobs)
    # What an upstream says answered (its ``model``, ``system_fingerprint``, version headers): how a hosted
    # model that changed under the same name is seen (provider canaries, llmdock.monitor.canary)
    served: dict[str, str] = field(default_factory=dict)


def tool_calls_text(calls: list[dict[str, Any]]) -> str:
    """OpenAI-shaped tool calls in llmdock's canonical text form: a JSON list of ``{"name", "arguments"}``.

    This is what the embedded model writes when it calls tools, and what traces and caches keep. Arguments
    that parse as JSON become JSON values; others stay strings, for the structured stage to repair or re-ask.
    """
    canonical = []
    for call in calls:
        fn = call.get("function") or {}
        raw = fn.get("arguments")
        try:
            arguments = orjson.loads(raw) if isinstance(raw, str) else raw
        except orjson.JSONDecodeError:
            arguments = raw
        canonical.append({"name": fn.get("name"), "arguments": arguments})
    return orjson.dumps(canonical).decode()


@dataclass(slots=True)
class StreamChunk:
    text: str
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # OpenAI-shaped tool-call deltas (index, id, function)
    logprobs: list[TokenLogprob] | None = None  # the tokens this chunk's text came from, when asked


@dataclass(slots=True)
class EmbeddingResult:
    vectors: list[list[float]]
    prompt_tokens: int


class BackendParams(BaseModel):
    """Base for a backend's own parameters (the extra keys of a model's config entry)."""

    model_config = ConfigDict(extra="forbid")


@dataclass(slots=True)
class BackendSpec:
    """What a backend instance is built from: one deployment of one model name."""

    name: str
    task: str = "chat"
    params: dict[str, Any] = field(default_factory=dict)
    context_window: int | None = None
    max_queue: int = 64
    description: str = ""
    where: tuple[str | int, ...] = ()  # config path of the deployment, for error messages


class Backend(ABC):
    """One configured model served by one kind of backend.

    Subclasses set ``kind`` (the name used in config) and ``Params`` (their parameter model), and implement
    what their task needs. ``slots`` bounds how many requests may run or wait at once; past it the backend
    answers :class:`Overloaded` (HTTP 503 with Retry-After) instead of queueing without bound.
    """

    kind: ClassVar[str]
    Params: ClassVar[type[BackendParams]] = BackendParams
    # True when the backend forwards response_format and tools to a server that implements them (the OpenAI
    # API); the others get schemas and tools rendered into the prompt, and a grammar in ``req.grammar``.
    native_structured_output: ClassVar[bool] = False
    # True when decoding follows ``req.grammar`` (so a structured answer may stream as it is generated).
    enforces_grammar: ClassVar[bool] = False
    # True when ``generate`` and ``stream`` give log-probabilities (and echo the prompt's) when asked.
    gives_logprobs: ClassVar[bool] = False

    def __init__(self, spec: BackendSpec, settings: Settings) -> None:
        self.spec = spec
        self.name = spec.name
        self.settings = settings
        try:
            self.params = self.Params.model_validate(spec.params)
        except PydanticValidationError as exc:
            raise config_error_from_pydantic(exc, settings._source, spec.where) from None
        self.context_window = spec.context_window or 0
        self._in_flight = 0
        self._limit = 1 + spec.max_queue
        self.loaded = False
        # What it serves from, filled when it loads (model file, registry version, artifact hash): traces
        # and evaluation results record it, so a result names the exact model version that answered.
        self.origin: dict[str, str] = {}

    @property
    def task(self) -> str:
        return self.spec.task

    def where(self, field: str) -> str:
        """Config location of one of this backend's parameters, for error messages."""
        return self.settings.where((*self.spec.where, field))

    async def health(self) -> None:
        """Raise a BackendError subclass if the backend cannot serve now (active health checks)."""
        if not self.loaded:
            raise BackendUnavailable(f"{self.name} is not loaded")

    async def start(self) -> None:
        """Load what the backend needs (called once at start unless the model is lazy)."""
        self.loaded = True

    async def ensure_started(self) -> None:
        if not self.loaded:
            await self.start()

    async def close(self) -> None:
        return None

    def info(self) -> dict[str, Any]:
        return {
            "id": self.name,
            "backend": self.kind,
            "task": self.task,
            "context_window": self.context_window,
            "loaded": self.loaded,
            "description": self.spec.description,
        }

    # --- admission -------------------------------------------------------------------------------------
    def admit(self) -> None:
        """Take a slot or raise Overloaded. Pair with :meth:`release`."""
        if self._in_flight >= self._limit:
            raise Overloaded(
                f"model {self.name!r} is at capacity ({self._in_flight} requests running or queued)",
                headers={"Retry-After": "1"},
            )
        self._in_flight += 1

    def hold(self) -> None:
        """Count a request that was already admitted once (a stream keeping its slot). Pair with release."""
        self._in_flight += 1

    def release(self) -> None:
        self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # --- generation ------------------------------------------------------------------------------------
    def prepare(self, req: GenerationRequest) -> None:
        """Render the prompt and count its tokens; raise ContextWindowExceeded if it cannot fit."""
        raise InvalidRequest(f"model {self.name!r} does not support {req.operation} requests")

    def check_window(self, req: GenerationRequest) -> None:
        window = self.context_window
        if not window:
            return
        wanted = req.n_prompt_tokens + (req.params.max_tokens or 0)
        if req.n_prompt_tokens >= window or wanted > window:
            raise ContextWindowExceeded(
                f"This model's maximum context length is {window} tokens. However, you requested {wanted} "
                f"tokens ({req.n_prompt_tokens} in the prompt, {req.params.max_tokens or 0} in the "
                "completion). Please reduce the prompt or max_tokens.",
                param=req.op.param if req.n_prompt_tokens >= window else "max_tokens",  # the one to fix
                extra={"context_window": window, "prompt_tokens": req.n_prompt_tokens},
            )

    async def generate(self, req: GenerationRequest) -> Generation:
        raise InvalidRequest(f"model {self.name!r} does not support {req.operation} requests")

    def stream(self, req: GenerationRequest) -> AsyncIterator[StreamChunk]:
        raise InvalidRequest(f"model {self.name!r} does not support streaming {req.operation} requests")

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        raise InvalidRequest(f"model {self.name!r} is not an embedding model")

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` by this model's tokenizer (an estimate where the backend has none)."""
        return max(1, len(text) // 4)


class InProcessBackend(Backend):
    """A model run inside the gateway process, on one worker thread of its own.

    One thread per model: the libraries (llama.cpp contexts, torch modules) are not safe to call from
    several threads at once, and the event loop must never block on them. ``start`` loads the model on
    that thread once, however many requests ask for it at the same time.
    """

    def __init__(self, spec: BackendSpec, settings: Settings) -> None:
        super().__init__(spec, settings)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.kind}-{self.name}")
        self._start_lock = asyncio.Lock()

    def _load(self) -> None:
        """Load the model (runs on the worker thread)."""
        raise NotImplementedError

    async def start(self) -> None:
        async with self._start_lock:
            if self.loaded:
                return
            await self.run(self._load)
            self.loaded = True

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` on the model's thread."""
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
