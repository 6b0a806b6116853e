"""HTTP plumbing of the gateway: bounded JSON bodies, validation errors naming the field, error responses.

Server-sent events are in :mod:`llmdock.gateway.sse`.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request
from starlette.responses import Response

from llmdock.errors import InvalidRequest, LlmdockError, PayloadTooLarge, ValidationError

B = TypeVar("B", bound=BaseModel)
log = logging.getLogger("llmdock.gateway")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: LlmdockError) -> JSONResponse:
    return JSONResponse(exc.to_body(), status_code=exc.status, headers=exc.headers)


def unexpected_error_response(exc: Exception) -> Response:
    """A bug, not the client's fault: logged with its traceback, answered 500 without internals."""
    log.exception("unexpected error", exc_info=exc)
    return error_response(LlmdockError(f"internal error ({type(exc).__name__}); see the server log"))


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (checked before and while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class FieldError(ValueError):
    """Raised by a model validator to name the field at fault (pydantic reports such errors at the root)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_body(raw: bytes, model: type[B]) -> B:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        msg = first["msg"]
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, FieldError):  # a check across fields that still names the one to fix
            field, msg = cause.field, str(cause)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValidationError(f"{field}: {msg}{more}", param=field) from None
