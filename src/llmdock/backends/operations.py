"""The API's operations — chat, completion, embedding — one codec each, holding all that differs between them.

Code that serves a request asks its operation (``req.op``, or ``OPERATIONS[ctx.operation]`` where only the
name travels) instead of comparing the operation's name: which request field carries the input, the
OpenTelemetry operation name, the path on an OpenAI-compatible server, how an upstream answer is read, how
a prompt template applies, and how an answer is shaped for the client (the OpenAI wire format both ways).
The codecs hold no per-request state; what they know is an attribute or a small method, so asking one costs
an attribute lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from llmdock.backends.logprobs import (
    TokenLogprob,
    chat_content,
    completion_logprobs,
    read_chat_content,
    read_completion_logprobs,
)
from llmdock.errors import InvalidRequest

if TYPE_CHECKING:  # base.py imports this module; the types are for annotations only
    from llmdock.backends.base import Generation, GenerationRequest, StreamChunk

T = TypeVar("T")
Messages = list[dict[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Operation:
    """What every operation knows about itself."""

    name: str  # as requests, traces and metrics name it
    # The request field that carries the input (errors about the input point at it); for a text operation
    # also the GenerationRequest attribute holding it, so ``getattr(req, op.param)`` reads it without a call.
    param: str
    otel_name: str  # gen_ai.operation.name
    upstream_path: str  # where an OpenAI-compatible server answers it, below its /v1
    embeds: bool = False  # answered by Backend.embed (vectors), not generate (text)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TextOperation(Operation):
    """An operation that generates text: the codec of a :class:`GenerationRequest`."""

    id_prefix: ClassVar[str]  # of the response id (the trace id follows)
    response_object: ClassVar[str]  # "object" of a whole answer
    chunk_object: ClassVar[str]  # "object" of a streamed chunk

    # --- the request ----------------------------------------------------------------------------------
    def read_input(
        self, req: GenerationRequest, messages: Callable[[Messages], T], prompt: Callable[[str], T]
    ) -> T:
        """``messages(req.messages)`` or ``prompt(req.prompt)``, whichever input this operation carries."""
        raise NotImplementedError

    def text_of(self, req: GenerationRequest) -> str:
        """The input as one text (a chat's message contents a line each), where no chat template applies."""
        raise NotImplementedError

    def apply_template(
        self, req: GenerationRequest, rendered: Any, *, chat_template: bool, name: str
    ) -> None:
        """Put a rendered prompt template (messages if ``chat_template``, else text) in front of the input."""
        raise NotImplementedError

    # --- an upstream's answer (OpenAI wire format) ----------------------------------------------------
    def read_choice(self, choice: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]] | None]:
        """Text and tool calls of one choice of a whole answer."""
        raise NotImplementedError

    def read_delta(self, choice: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
        """Text and tool-call deltas of one choice of a streamed chunk."""
        raise NotImplementedError

    # --- the answer to the client (OpenAI wire format) ------------------------------------------------
    def response_choice(self, gen: Generation) -> dict[str, Any]:
        """The one choice of a whole answer."""
        raise NotImplementedError

    def opening_choice(self) -> dict[str, Any] | None:
        """The choice of the event a stream opens with, if this operation sends one."""
        return None

    def chunk_choice(self, chunk: StreamChunk) -> dict[str, Any]:
        """The one choice of a streamed chunk."""
        raise NotImplementedError

    # --- log-probabilities (backends/logprobs.py), in this operation's OpenAI format ------------------
    def logprobs_body(self, tokens: list[TokenLogprob]) -> dict[str, Any]:
        """A choice's ``logprobs`` object."""
        raise NotImplementedError

    def read_logprobs(self, choice: dict[str, Any]) -> list[TokenLogprob] | None:
        """The tokens of an upstream choice's (or chunk choice's) ``logprobs``; None when it has none."""
        raise NotImplementedError

    def logprobs_fields(self, req: GenerationRequest) -> dict[str, Any]:
        """The fields that ask an upstream for log-probabilities as ``req`` does."""
        raise NotImplementedError

    def logprobs_of(self, tokens: list[TokenLogprob] | None) -> dict[str, Any] | None:
        return None if tokens is None else self.logprobs_body(tokens)


class Chat(TextOperation):
    __slots__ = ()
    id_prefix = "chatcmpl-"
    response_object = "chat.completion"
    chunk_object = "chat.completion.chunk"

    def read_input(
        self, req: GenerationRequest, messages: Callable[[Messages], T], prompt: Callable[[str], T]
    ) -> T:
        return messages(req.messages or [])

    def text_of(self, req: GenerationRequest) -> str:
        return "\n".join(str(m.get("content") or "") for m in req.messages or [])

    def apply_template(
        self, req: GenerationRequest, rendered: Any, *, chat_template: bool, name: str
    ) -> None:
        head = rendered if chat_template else [{"role": "user", "content": rendered}]
        req.messages = [*head, *(req.messages or [])]

    def read_choice(self, choice: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]] | None]:
        message = choice["message"]
        return message["content"], message.get("tool_calls")

    def read_delta(self, choice: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
        delta = choice.get("delta") or {}
        return delta.get("content"), delta.get("tool_calls") or []

    def response_choice(self, gen: Generation) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": gen.text}
        if gen.tool_calls:
            message = {"role": "assistant", "content": None, "tool_calls": gen.tool_calls}
        logprobs = self.logprobs_of(gen.logprobs.tokens) if gen.logprobs is not None else None
        return {"index": 0, "message": message, "finish_reason": gen.finish_reason, "logprobs": logprobs}

    def opening_choice(self) -> dict[str, Any] | None:
        return {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}

    def chunk_choice(self, chunk: StreamChunk) -> dict[str, Any]:
        delta: dict[str, Any] = (
            {"tool_calls": chunk.tool_calls}
            if chunk.tool_calls
            else {"content": chunk.text}
            if chunk.text
            else {}
        )
        if chunk.logprobs is not None:
            return {
                "index": 0,
                "delta": delta,
                "logprobs": self.logprobs_body(chunk.logprobs),
                "finish_reason": chunk.finish_reason,
            }
        return {"index": 0, "delta": delta, "finish_reason": chunk.finish_reason}

    def logprobs_body(self, tokens: list[TokenLogprob]) -> dict[str, Any]:
        return {"content": chat_content(tokens)}

    def logprobs_fields(self, req: GenerationRequest) -> dict[str, Any]:
        return {"logprobs": True, "top_logprobs": req.logprobs}

    def read_logprobs(self, choice: dict[str, Any]) -> list[TokenLogprob] | None:
        found = choice.get("logprobs")
        return None if found is None else read_chat_content(found.get("content"))


class Completion(TextOperation):
    __slots__ = ()
    id_prefix = "cmpl-"
    response_object = chunk_object = "text_completion"

    def read_input(
        self, req: GenerationRequest, messages: Callable[[Messages], T], prompt: Callable[[str], T]
    ) -> T:
        return prompt(req.prompt or "")

    def text_of(self, req: GenerationRequest) -> str:
        return req.prompt or ""

    def apply_template(
        self, req: GenerationRequest, rendered: Any, *, chat_template: bool, name: str
    ) -> None:
        if chat_template:
            raise InvalidRequest(
                f"prompt template {name!r} is a chat template: use /v1/chat/completions", param="prompt_id"
            )
        req.prompt = rendered + (req.prompt or "")

    def read_choice(self, choice: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]] | None]:
        return choice["text"], None

    def read_delta(self, choice: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
        return choice.get("text"), []

    def response_choice(self, gen: Generation) -> dict[str, Any]:
        logprobs = self.logprobs_of(gen.logprobs.tokens) if gen.logprobs is not None else None
        return {"index": 0, "text": gen.text, "finish_reason": gen.finish_reason, "logprobs": logprobs}

    def chunk_choice(self, chunk: StreamChunk) -> dict[str, Any]:
        logprobs = self.logprobs_of(chunk.logprobs)
        return {"index": 0, "text": chunk.text, "logprobs": logprobs, "finish_reason": chunk.finish_reason}

    def logprobs_body(self, tokens: list[TokenLogprob]) -> dict[str, Any]:
        return completion_logprobs(tokens)

    def logprobs_fields(self, req: GenerationRequest) -> dict[str, Any]:
        return {"logprobs": req.logprobs, "echo": req.echo}

    def read_logprobs(self, choice: dict[str, Any]) -> list[TokenLogprob] | None:
        found = choice.get("logprobs")
        return None if found is None else read_completion_logprobs(found)


CHAT = Chat(name="chat", param="messages", otel_name="chat", upstream_path="/chat/completions")
COMPLETION = Completion(
    name="completion", param="prompt", otel_name="text_completion", upstream_path="/completions"
)
EMBEDDING = Operation(
    name="embedding", param="input", otel_name="embedding", upstream_path="/embeddings", embeds=True
)
TEXT_OPERATIONS: dict[str, TextOperation] = {op.name: op for op in (CHAT, COMPLETION)}
OPERATIONS: dict[str, Operation] = {**TEXT_OPERATIONS, EMBEDDING.name: EMBEDDING}
