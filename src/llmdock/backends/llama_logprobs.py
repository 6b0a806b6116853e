"""Log-probabilities from llama.cpp logits, for the batch engine (llama_batch.py).

Only sequences that ask pay for them: a log-softmax over the vocabulary at each of their positions (numpy,
on the model's worker thread, right after the ``llama_decode`` that produced the logits).
"""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp
import numpy as np

from llmdock.backends.logprobs import Alternative, TokenLogprob, token_text


def token_piece(vocab: Any, token: int, *, special: bool) -> bytes:
    """A token's bytes as llama.cpp writes it; ``special``: control tokens (``<|im_end|>``) as their text."""
    buf = ctypes.create_string_buffer(64)
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, special)
    if n < 0:  # longer than the buffer: -n is the length needed
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, special)
    return buf.raw[:n]


class TokenScorer:
    """Turns one batch position's logits into the :class:`TokenLogprob` of the token that follows it."""

    def __init__(self, vocab: Any, n_vocab: int) -> None:
        self._vocab = vocab
        self._n_vocab = n_vocab
        self._pieces: dict[int, bytes] = {}

    def piece(self, token: int) -> bytes:
        """A token's bytes, control tokens written out (prompts hold them as text)."""
        found = self._pieces.get(token)
        if found is None:
            found = self._pieces[token] = token_piece(self._vocab, token, special=True)
        return found

    def score(self, ctx: Any, index: int, token: int, top: int, raw: bytes | None = None) -> TokenLogprob:
        """The log-probability of ``token`` at batch position ``index`` and the ``top`` most likely tokens
        there (best first). ``raw``: the token's bytes as the answer's text has them (default: :meth:`piece`)."""
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index), shape=(self._n_vocab,))
        best = float(logits.max())
        log_total = best + float(np.log(np.exp(logits - best, dtype=np.float64).sum()))
        alternatives: tuple[Alternative, ...] = ()
        if top:
            ids = np.argpartition(-logits, top)[:top]
            ids = ids[np.argsort(-logits[ids], kind="stable")]
            alternatives = tuple(
                Alternative(token_text(p), p, float(logits[i]) - log_total)
                for i, p in ((int(i), self.piece(int(i))) for i in ids)
            )
        raw = self.piece(token) if raw is None else raw
        return TokenLogprob(token_text(raw), raw, float(logits[token]) - log_total, alternatives)

    def first(self, token: int) -> TokenLogprob:
        """An echoed prompt's first token: nothing before it, so no log-probability."""
        raw = self.piece(token)
        return TokenLogprob(token_text(raw), raw, None)
