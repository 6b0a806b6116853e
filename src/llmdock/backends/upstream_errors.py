"""How an OpenAI-compatible upstream's failures become llmdock errors: one table for the transport, one for answers.

Transport failures (either HTTP client: the lean pool of http1.py or httpx) are mapped by
:func:`transport_error`, in the except clause every call to the upstream has — the way httpx maps httpcore's
exceptions to its own. Error answers are mapped by :func:`upstream_error`:
connection problems and timeouts -> BackendUnavailable (503), 5xx -> BackendError (502), 429 ->
RateLimited with the upstream's Retry-After, other 4xx -> InvalidRequest with the upstream's message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

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
# Every transport exception the table maps: what a call to the upstream catches.
TRANSPORT_FAILURES = tuple(t for types, _, _ in TRANSPORT_ERRORS for t in types)


def transport_error(exc: BaseException, where: str) -> LlmdockError:
    """The llmdock error for a transport failure (one of :data:`TRANSPORT_FAILURES`).

    Callers write ``except TRANSPORT_FAILURES as exc: raise transport_error(exc, where) from None`` around
    each call to the upstream: unlike a context manager, that costs nothing on the way when nothing fails
    (two fewer Python calls per gateway request, measured by bench/gateway_instructions.py).
    """
    for types, error, message in TRANSPORT_ERRORS:
        if isinstance(exc, types):
            return error(message(exc), where=where)
    raise TypeError(f"not a transport failure: {exc!r}")  # a caller's except clause is wrong


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
