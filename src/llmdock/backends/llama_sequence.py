"""One request's state in the batch engine (llama_batch.py): its text, cut at stop strings, and its slot.

Nothing here touches llama.cpp: the engine feeds a :class:`Sequence` token bytes and sends what
:class:`TextTail` lets through; a :class:`Slot` is one KV-cache sequence id and the tokens it holds.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the sampler loads llama.cpp; a sequence only holds one
    from llmdock.backends.llama_sampler import SamplerChain
    from llmdock.backends.logprobs import TokenLogprob


@dataclass(slots=True)
class Delta:
    """Text a sequence produced since its previous delta; the last one carries the finish reason."""

    text: str
    finish_reason: str | None = None
    completion_tokens: int = 0
    logprobs: list[TokenLogprob] | None = None  # tokens since the previous delta, when the request asked


Emit = Callable[[Delta | BaseException], None]


class TextTail:
    """A sequence's text: bytes of tokens in, UTF-8 text out, cut at the first stop string.

    Text that could be the start of a stop string is held back until the next tokens decide (a stop
    string may span tokens), so a stop string never reaches the client, not even in part.
    """

    def __init__(self, stop: list[str]) -> None:
        self.stop = [s for s in stop if s]
        self._longest = max((len(s) for s in self.stop), default=0)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self.text = ""
        self.sent = 0
        self.stopped = False

    def feed(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that is now safe to send."""
        before = len(self.text)
        self.text += self._decoder.decode(piece)
        if self.stop:
            start = max(0, before - self._longest + 1)
            hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                self.stopped = True
                return self.take(len(self.text))
            return self.take(len(self.text) - self._held())
        return self.take(len(self.text))

    def _held(self) -> int:
        """Length of the longest end of the unsent text that begins a stop string."""
        for n in range(min(self._longest - 1, len(self.text) - self.sent), 0, -1):
            tail = self.text[-n:]
            if any(s.startswith(tail) for s in self.stop):
                return n
        return 0

    def take(self, upto: int) -> str:
        out = self.text[self.sent : upto]
        self.sent = max(self.sent, upto)
        return out

    def finish(self) -> str:
        """The text held back so far (it turned out not to be a stop string)."""
        if not self.stopped:
            self.text += self._decoder.decode(b"", final=True)
        return self.take(len(self.text))


class Sequence:
    """One request in the engine: its prompt, limits and sampler, and where its text goes.

    ``emit`` receives :class:`Delta` items, per token when ``stream`` is set, else one at the end with all
    the text; the last delta has a finish reason. An exception is emitted instead if generation fails.
    Call :meth:`cancel` from any thread to stop it at the next step.
    """

    def __init__(
        self,
        prompt: list[int],
        *,
        max_tokens: int,
        stop: list[str],
        sampler: SamplerChain,
        emit: Emit,
        stream: bool,
        logprobs: int | None = None,
        echo: bool = False,
    ) -> None:
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.sampler = sampler
        self.emit = emit
        self.stream = stream
        self.cancelled = False
        self.text = TextTail(stop)
        # Decoding state, touched only by the worker thread.
        self.pending: list[int] = []  # prompt tokens not decoded yet
        self.next_token = -1  # the last sampled token, decoded in the next step
        self.out_index = -1  # position of this sequence's logits in the current batch, -1 if none
        self.generated = 0
        # Log-probabilities: None = not asked, else the alternatives wanted per token; with ``echo``, the
        # prompt's tokens are scored too (so none of the prompt comes from a slot's cache).
        self.logprobs = logprobs
        self.echo = echo and logprobs is not None
        self.scored: list[TokenLogprob] = []  # scored tokens not yet sent in a delta

    def take_scored(self) -> list[TokenLogprob] | None:
        """The tokens scored since the last delta (None when the request did not ask)."""
        if self.logprobs is None:
            return None
        scored, self.scored = self.scored, []
        return scored

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(slots=True)
class Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # what the KV cache holds for this sequence id
    sequence: Sequence | None = None


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
