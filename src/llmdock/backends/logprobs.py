"""Log-probabilities of an answer's tokens, and their OpenAI wire formats both ways.

A backend that can give them (``Backend.gives_logprobs``) fills ``Generation.logprobs`` (and each
``StreamChunk.logprobs``) when the request asks (``GenerationRequest.logprobs`` is the number of most likely
alternatives wanted per token, 0..20; ``echo`` adds the prompt's tokens, the first with no log-probability).
The values are the model's own distribution (a log-softmax of its logits), before temperature, top-p,
penalties or a grammar reshape it: what perplexity needs, and what OpenAI returns.

Nothing here touches a model: the llama.cpp engine builds :class:`TokenLogprob` items from logits, the
OpenAI-compatible backend reads them from an upstream's answer, the operation codecs write them out.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from llmdock.errors import InvalidRequest

if TYPE_CHECKING:
    from llmdock.backends.base import Backend

MAX_TOP_LOGPROBS = 20
"""The most alternatives per token a request may ask for (OpenAI's bound for ``top_logprobs``)."""


@dataclass(frozen=True, slots=True)
class Alternative:
    """One of the most likely tokens at a position."""

    token: str
    raw: bytes
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One token of the answer (or, with echo, of the prompt): its text, bytes, log-probability, the most
    likely alternatives at its position (best first) and where its text starts (``text_offset``)."""

    token: str
    raw: bytes
    logprob: float | None  # None for the first token of an echoed prompt: nothing comes before it
    top: tuple[Alternative, ...] = ()
    offset: int = 0


@dataclass(slots=True)
class Logprobs:
    """An answer's per-token log-probabilities, with echo the prompt's first (``n_prompt`` of them).

    ``answer`` is the generated text they describe: a stage that rewrites the answer afterwards (a redacting
    guard, a repaired JSON answer) makes them describe another text, and the gateway then refuses to send them.
    """

    tokens: list[TokenLogprob] = field(default_factory=list)
    answer: str = ""
    n_prompt: int = 0


def token_text(raw: bytes) -> str:
    """A token's text; one that is part of a UTF-8 character is written as its bytes (``bytes:\\xe2``), as
    OpenAI writes such tokens."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


class Placer:
    """Gives tokens their text offsets: where each token's text starts, in characters from ``start``.

    Characters split across tokens count where they end, as the text the client reads is decoded. Tokens may
    come in several calls (a stream). ``skip_first``: the first token is not in the text (a beginning-of-
    sequence token the tokenizer added).
    """

    def __init__(self, start: int = 0, *, skip_first: bool = False) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self.at = start
        self._skip = skip_first

    def place(self, tokens: Iterable[TokenLogprob]) -> list[TokenLogprob]:
        out = []
        for item in tokens:
            out.append(replace(item, offset=self.at))
            if self._skip:
                self._skip = False
            else:
                self.at += len(self._decoder.decode(item.raw))
        return out


def placed(tokens: Iterable[TokenLogprob], start: int = 0) -> list[TokenLogprob]:
    """``tokens`` with their text offsets from ``start`` (see :class:`Placer`)."""
    return Placer(start).place(tokens)


def perplexity(logprobs: Sequence[float]) -> float:
    """exp of the mean negative log-probability (natural log) of ``logprobs``; NaN for none."""
    if not logprobs:
        return math.nan
    return math.exp(-sum(logprobs) / len(logprobs))


# --- OpenAI's chat format: choices[i].logprobs = {"content": [...]} ---------------------------------------


def chat_content(tokens: Sequence[TokenLogprob]) -> list[dict[str, Any]]:
    return [
        {
            "token": t.token,
            "logprob": t.logprob,
            "bytes": list(t.raw),
            "top_logprobs": [{"token": a.token, "logprob": a.logprob, "bytes": list(a.raw)} for a in t.top],
        }
        for t in tokens
    ]


def read_chat_content(content: Sequence[dict[str, Any]] | None) -> list[TokenLogprob]:
    """An upstream's ``logprobs.content`` (offsets are filled by :func:`placed`)."""
    return placed(
        TokenLogprob(
            item["token"],
            _raw(item),
            item.get("logprob"),
            tuple(Alternative(a["token"], _raw(a), a["logprob"]) for a in item.get("top_logprobs") or ()),
        )
        for item in content or ()
    )


def _raw(item: dict[str, Any]) -> bytes:
    given = item.get("bytes")
    return bytes(given) if given is not None else str(item["token"]).encode()


# --- OpenAI's completions format: choices[i].logprobs = {tokens, token_logprobs, top_logprobs, text_offset} --


def completion_logprobs(tokens: Sequence[TokenLogprob]) -> dict[str, Any]:
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [None if t.logprob is None else {a.token: a.logprob for a in t.top} for t in tokens],
        "text_offset": [t.offset for t in tokens],
    }


def read_completion_logprobs(body: dict[str, Any] | None) -> list[TokenLogprob]:
    """An upstream's completions ``logprobs`` object (top alternatives come as ``{token: logprob}``)."""
    if not body:
        return []
    tops = body.get("top_logprobs") or []
    offsets = body.get("text_offset") or []
    out = []
    for i, (token, logprob) in enumerate(zip(body["tokens"], body["token_logprobs"], strict=True)):
        top = tops[i] if i < len(tops) and tops[i] else {}
        out.append(
            TokenLogprob(
                token,
                token.encode(),
                logprob,
                tuple(Alternative(t, t.encode(), lp) for t, lp in top.items()),
                offsets[i] if i < len(offsets) else 0,
            )
        )
    return out if offsets else placed(out)


def require_logprobs(model: str, backends: Iterable[Backend], param: str) -> None:
    """Refuse (400, naming ``param``) a request for log-probabilities that a model's backends cannot give.

    ``backends``: every backend the model may be served by (a routed model's deployments).
    """
    unable = sorted({b.kind for b in backends if not type(b).gives_logprobs})
    if unable:
        raise InvalidRequest(
            f"model {model!r} cannot return log-probabilities (its {', '.join(unable)} backend gives none): "
            f"leave out {param}",
            param=param,
        )
