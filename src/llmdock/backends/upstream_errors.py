"""How an OpenAI-compatible upstream's failures become llmdock errors: one table for the transport, one for answers.

Transport failures (either HTTP client: the lean pool of http1.py or httpx) are mapped by
:func:`map_upstream_errors`, a context manager every call to the upstream runs in — the way httpx maps
httpcore's exceptions to its own. Error answers are mapped by :func:`upstream_error`:
connection problems and timeouts -> BackendUnavailable (503), 5xx -> BackendError (502), 429 ->
RateLimited with the upstream's Retry-After, other 4xx -> InvalidRequest with the upstream's message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType

import httpx
import orjson

from llmdock.backends.http1 import ConnectionClosed, InvalidResponse
from llmdock.errors import (
    BackendError,
    BackendUnavailable,
    ContextWindowExceeded,
    GuardBlocked,
    InvalidRequest,
    LlmdockError,
    RateLimited,
)


def _unreachable(exc: BaseException) -> str:
    return f"upstream unreachable: {str(exc) or type(exc).__name__}"


# Transport exception -> the llmdock error it becomes and its message; the first row that matches wins
# (timeouts first: TimeoutError is an OSError, httpx.TimeoutException an httpx.HTTPError).
TRANSPORT_ERRORS: tuple[
    tuple[tuple[type[BaseException], ...], type[LlmdockError], Callable[[BaseException], str]], ...
] = (
    ((TimeoutError, httpx.TimeoutException), BackendUnavailable, lambda exc: "upstream timed out"),
    ((InvalidResponse,), BackendError, str),
    ((ConnectionClosed, OSError, httpx.HTTPError), BackendUnavailable, _unreachable),
)
_CAUGHT = tuple(t for types, _, _ in TRANSPORT_ERRORS for t in types)


class map_upstream_errors:  # a context manager, named as contextlib's are
    """``with map_upstream_errors(where):`` turns transport failures inside into llmdock errors.

    It keeps no state between uses: a backend makes one and enters it for every call (cheaper than a
    generator-based context manager made per call, on the gateway's hot path).
    """

    __slots__ = ("where",)

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or not isinstance(exc, _CAUGHT):
            return
        for types, error, message in TRANSPORT_ERRORS:
            if isinstance(exc, types):
                raise error(message(exc), where=self.where) from None


def upstream_error(status: int, text: str, headers: Mapping[str, str], where: str) -> LlmdockError:
    """The llmdock error for an upstream's error answer (its status, body and headers)."""
    try:
        err = orjson.loads(text)["error"]
        message = str(err["message"])
        code = f"{err.get('code') or ''} {err.get('type') or ''}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message, code = text[:300], ""
    if "context_length_exceeded" in code:
        return ContextWindowExceeded(f"upstream: {message}", where=where)
    if "content_filter" in code or "content_policy" in code:
        return GuardBlocked(f"upstream refused on content policy: {message}", where=where)
    if status == 429:
        return RateLimited(message, where=where, headers={"Retry-After": headers.get("retry-after", "1")})
    if status >= 500:
        return BackendError(f"upstream answered {status}: {message}", where=where)
    return InvalidRequest(f"upstream rejected the request ({status}): {message}", where=where)
