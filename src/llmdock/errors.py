"""The one exception tree of llmdock.

Every error a user can cause or meet is an :class:`LlmdockError`. Each class carries the HTTP status the
gateway answers with and a stable ``code`` that clients may match on. ``where`` says where the problem is
(``file:line: field`` for config files, a request field for API calls). The gateway turns these into
OpenAI-shaped error bodies in one handler; the CLI prints them on one line and exits with code 2.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LlmdockError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    type: ClassVar[str] = "server_error"

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}

    def one_line(self) -> str:
        """The form the CLI prints: ``where: message``."""
        return f"{self.where}: {self.message}" if self.where else self.message

    def to_body(self) -> dict[str, Any]:
        """OpenAI-shaped error body."""
        err: dict[str, Any] = {
            "message": self.one_line(),
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        err.update(self.extra)
        return {"error": err}


class ConfigError(LlmdockError):
    status = 500
    code = "config_error"
    type = "invalid_config"


class InvalidRequest(LlmdockError):
    status = 400
    code = "invalid_request"
    type = "invalid_request_error"


class ValidationError(InvalidRequest):
    status = 422
    code = "validation_error"


class ContextWindowExceeded(InvalidRequest):
    status = 400
    code = "context_length_exceeded"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload_too_large"


class NotFound(LlmdockError):
    status = 404
    code = "not_found"
    type = "invalid_request_error"


class ModelNotFound(NotFound):
    code = "model_not_found"


class Conflict(LlmdockError):
    status = 409
    code = "conflict"
    type = "invalid_request_error"


class AuthError(LlmdockError):
    status = 401
    code = "invalid_api_key"
    type = "authentication_error"


class Forbidden(LlmdockError):
    status = 403
    code = "forbidden"
    type = "permission_error"


class RateLimited(LlmdockError):
    status = 429
    code = "rate_limited"
    type = "rate_limit_error"


class GuardBlocked(LlmdockError):
    status = 400
    code = "content_policy"
    type = "invalid_request_error"


class BackendError(LlmdockError):
    status = 502
    code = "backend_error"
    type = "server_error"


class BackendUnavailable(BackendError):
    status = 503
    code = "backend_unavailable"


class InvalidStructuredOutput(BackendError):
    """The model's answer did not follow the requested JSON schema or tools, even after repair and re-asks."""

    code = "invalid_structured_output"


class Overloaded(BackendUnavailable):
    """The backend's queue is full: the client should retry later (``Retry-After`` is set)."""

    code = "overloaded"


class StoreUnavailable(LlmdockError):
    status = 503
    code = "store_unavailable"


class BudgetExceeded(LlmdockError):
    """A key's or team's spend budget for the period is used up (HTTP 402; ``Retry-After`` = period end)."""

    status = 402
    code = "budget_exceeded"
    type = "insufficient_quota"


def from_gateway(status: int, body: Any) -> LlmdockError:
    """The error a gateway answered (status, parsed or raw body) as the matching class, for the SDKs.

    The gateway's message and ``param`` are kept as it wrote them; an unmapped status is a plain LlmdockError.
    """
    kinds: dict[int, type[LlmdockError]] = {
        400: InvalidRequest,
        401: AuthError,
        403: Forbidden,
        404: NotFound,
    }
    try:
        error = body["error"]
        message, param = str(error["message"]), error.get("param")
    except (KeyError, TypeError):
        message, param = f"HTTP {status}: {str(body)[:200]}", None
    return kinds.get(status, LlmdockError)(message, param=param)
