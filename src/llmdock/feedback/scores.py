"""What one piece of feedback may hold, checked: one score (thumbs, a 1-5 rating, or a named number), a
comment, a correction (the answer the user wanted), and who gave it (user, reviewer, evaluator)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmdock.errors import InvalidRequest

Source = Literal["user", "reviewer", "evaluator"]
RESERVED = ("thumbs", "rating")
SCORE_LIMIT = 1e6


class FeedbackIn(BaseModel):
    """The body of ``POST /v1/feedback`` (and what ``llmdock feedback add`` builds)."""

    model_config = ConfigDict(extra="forbid")

    trace_id: str = Field(min_length=1, max_length=32)
    thumbs: Literal["up", "down"] | None = None
    rating: int | None = Field(default=None, ge=1, le=5)
    name: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_.-]{0,63}$")
    value: float | None = Field(default=None, ge=-SCORE_LIMIT, le=SCORE_LIMIT, allow_inf_nan=False)
    comment: str = Field(default="", max_length=10_000)
    correction: str = Field(default="", max_length=100_000)
    source: Source = "user"

    @model_validator(mode="after")
    def _one_score(self) -> FeedbackIn:
        given = [f for f in ("thumbs", "rating", "name") if getattr(self, f) is not None]
        if len(given) > 1:
            raise ValueError(f"give one score, not {' and '.join(given)}")
        if (self.name is None) != (self.value is None):
            raise ValueError("a named score needs both 'name' and 'value'")
        if self.name in RESERVED:
            raise ValueError(f"{self.name!r} is a built-in score: use the '{self.name}' field")
        if not given and not self.comment and not self.correction:
            raise ValueError(
                "nothing to record: give a score (thumbs, rating, name+value), a comment or a correction"
            )
        return self

    def score(self) -> tuple[str, float | None]:
        """(name, value) as stored: thumbs up 1 / down 0, a rating 1-5, a named value; ("", None) for none."""
        if self.thumbs is not None:
            return "thumbs", 1.0 if self.thumbs == "up" else 0.0
        if self.rating is not None:
            return "rating", float(self.rating)
        return self.name or "", self.value


def check_feedback(data: dict[str, Any]) -> FeedbackIn:
    """``data`` as feedback, or InvalidRequest naming the field at fault."""
    try:
        return FeedbackIn.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidRequest(f"{field}: {message}", param=field) from None
