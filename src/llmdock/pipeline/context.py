"""The RequestContext that flows through the pipeline's stages."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from llmdock.backends.base import Backend, EmbeddingResult, Generation, GenerationRequest
from llmdock.store.trace_records import SpanRecord

if TYPE_CHECKING:
    from llmdock.prompts import PromptCall

OperationName = Literal["chat", "completion", "embedding"]


def new_trace_id() -> str:
    """128 random bits as 32 hex digits (a trace id is no secret: no system call per request, unlike uuid4)."""
    return f"{random.getrandbits(128):032x}"


@dataclass(slots=True)
class RequestContext:
    """Everything one request carries from stage to stage.

    ``request`` is set for chat and completion, ``inputs`` for embeddings. The generate stage fills
    ``generation`` or ``embedding``; a stage may instead short-circuit by setting ``generation`` before
    generate runs. ``attributes`` end up on the trace; ``annotate`` adds to the current stage's span.
    """

    operation: OperationName
    model: str
    backend: Backend
    request: GenerationRequest | None = None
    inputs: list[str] = field(default_factory=list)
    stream: bool = False
    trace_id: str = field(default_factory=new_trace_id)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.perf_counter)
    generation: Generation | None = None
    embedding: EmbeddingResult | None = None
    spans: list[SpanRecord] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    http_status: int = 200
    error: str = ""
    source: str = "gateway"
    namespace: str = ""  # tenant scope (API key); caches never cross it
    cache_control: str = ""  # the request's Cache-Control header ("no-cache" bypasses caches)
    subject: str = ""  # the end user the data belongs to (the request's `user`, else the key's user)
    session: str = ""  # the conversation (x-llmdock-session header) whose turns the memory stage keeps
    api_key_id: str = ""
    team_id: str = ""
    structured_fields: dict[str, Any] | None = None  # response_format / tools / tool_choice, as sent
    # what the answer must follow, as the structured stage planned it from structured_fields (read it with
    # llmdock.structured.plan_of; the pipeline itself never looks inside)
    structured: object | None = None
    prompt: PromptCall | None = None  # a stored prompt template, rendered by the pre-process stage
    reasoning: str = ""  # the model's reasoning, split off the answer (a template's reasoning mode)
    on_success: list[Callable[[RequestContext], None]] = field(default_factory=list)
    # Set by the trace sink when traces are fsynced before answering (trace.journal_sync: fsync): done once
    # this request's trace is on disk. The gateway awaits it before the answer leaves.
    durable: Awaitable[None] | None = None
    # PII analyses made while serving, {(engine, text): llmdock.privacy PiiAnalysis}: the `pii` guard leaves
    # them for the trace's PII mask, which reuses what it can (llmdock.privacy.findings)
    pii_analyses: dict[tuple[object, str], object] | None = None
    _span_attrs: dict[str, Any] = field(default_factory=dict)

    def annotate(self, **attrs: Any) -> None:
        """Add attributes to the span of the stage now running."""
        self._span_attrs.update(attrs)

    @property
    def reasoning_mode(self) -> bool:
        return self.prompt is not None and bool(self.prompt.prompt.config.get("reasoning"))

    @property
    def output_text(self) -> str:
        return self.generation.text if self.generation else ""
