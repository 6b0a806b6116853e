"""One sequence's sampler chain for the batch engine (:mod:`llmdock.backends.llama_batch`)."""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import Any

import llama_cpp
import numpy as np

# As llama-cpp-python's create_completion, which served requests before this engine: same answers.
TOP_K = 40
MIN_P = 0.05
PENALTY_LAST_N = 64


@dataclass(slots=True)
class Sampling:
    temperature: float
    top_p: float
    seed: int
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    grammar: str | None = None
    # False: every step checks the whole vocabulary against the grammar before sampling, as llama-cpp-python
    # does (the answers are the same; bench/grammar_speed.py compares the two).
    sampled_first: bool = True


class SamplerChain:
    """One sequence's llama.cpp sampler chain, built as llama-cpp-python's ``create_completion`` builds its
    own: penalties, grammar, then greedy at temperature 0, else top-k, top-p, min-p, temperature and a draw
    from the sequence's own seeded generator. Free it with :meth:`close`.

    With a grammar, checking every token of the vocabulary against it at every step costs more than the
    model's forward pass on a small model. Like llama.cpp's server, the chain checks few tokens first and
    the whole vocabulary only when those do not settle the step; unlike it, the answer is exactly the one
    of the whole-vocabulary chain (see :meth:`_sample_checked`).
    """

    def __init__(self, vocab: Any, n_vocab: int, s: Sampling) -> None:
        self._chain: Any = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self._n_vocab = n_vocab
        self._greedy = s.temperature <= 0
        self._top_p = s.top_p
        self._grammar_at = -1  # index of the grammar sampler in the chain; -1: none, or not sampled first
        try:
            if s.presence_penalty or s.frequency_penalty:
                self._add(
                    llama_cpp.llama_sampler_init_penalties(
                        n_vocab, PENALTY_LAST_N, 1.0, s.frequency_penalty, s.presence_penalty
                    )
                )
            if s.grammar:
                grammar = llama_cpp.llama_sampler_init_grammar(vocab, s.grammar.encode(), b"root")
                if not grammar:
                    raise ValueError("the grammar is not valid GBNF (llama.cpp could not parse it)")
                if s.sampled_first:
                    self._grammar_at = llama_cpp.llama_sampler_chain_n(self._chain)
                self._add(grammar)
            if self._greedy:
                self._add(llama_cpp.llama_sampler_init_greedy())
            else:
                self._add(llama_cpp.llama_sampler_init_top_k(TOP_K))
                self._add(llama_cpp.llama_sampler_init_top_p(s.top_p, 1))
                self._add(llama_cpp.llama_sampler_init_min_p(MIN_P, 1))
                self._add(llama_cpp.llama_sampler_init_temp(s.temperature))
                self._add(llama_cpp.llama_sampler_init_dist(s.seed & 0xFFFFFFFF))
        except BaseException:
            self.close()
            raise
        self.fast_steps = 0  # steps settled without checking the whole vocabulary (for tests and benches)

    def _add(self, sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)  # the chain owns it from here

    def sample(self, ctx: Any, index: int) -> int:
        """Sample from the logits of batch position ``index`` and feed the token to the chain's state."""
        if self._grammar_at >= 0:
            token = self._sample_checked(ctx, index)
            if token >= 0:
                self.fast_steps += 1
                llama_cpp.llama_sampler_accept(self._chain, token)
                return token
        return int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))

    def _sample_checked(self, ctx: Any, index: int) -> int:
        """The token the whole chain would pick, found by checking few candidates against the grammar; -1
        when those do not decide it (the caller then runs the whole chain).

        The grammar only removes tokens. Greedy: the best allowed token among the best candidates is the best
        allowed token. Otherwise top-k keeps the ``TOP_K`` best allowed tokens and everything after it in the
        chain (top-p, min-p, temperature, the seeded draw) sees only those: so if the ``CANDIDATES`` best tokens
        hold ``TOP_K`` allowed ones, the rest of the chain run on just those gives the same token from the same
        random draw. With fewer, the same holds when top-p is off and every unchecked token lies below min-p's
        cut (min-p would drop the ones top-k adds). Tokens with exactly equal logits may come out in another
        order; llama.cpp leaves their order unspecified too.
        """
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index), shape=(self._n_vocab,))
        if self._grammar_at > 0:  # penalties first, on the whole vocabulary, as the chain applies them
            full = _candidates(np.arange(self._n_vocab, dtype=np.int32), logits)
            self._apply(0, full)
            logits = full["logit"]
        if self._greedy:
            best = int(np.argmax(logits))  # the first of equal maxima, as llama.cpp's greedy sampler
            one = _candidates(np.array([best], dtype=np.int32), logits[best : best + 1])
            self._apply(self._grammar_at, one)
            if np.isfinite(one["logit"][0]):
                return best
        top = np.argpartition(-logits, CANDIDATES)[:CANDIDATES]
        top = top[np.argsort(-logits[top], kind="stable")].astype(np.int32)
        checked = _candidates(top, logits[top])
        self._apply(self._grammar_at, checked)
        allowed = checked[np.isfinite(checked["logit"])][:TOP_K]
        if self._greedy:  # the best allowed candidate is the best allowed token
            return int(allowed["id"][0]) if len(allowed) else -1
        if len(allowed) < TOP_K and not (
            # Fewer allowed tokens: still settled if every unchecked token falls below min-p's cut (so the
            # allowed ones top-k would add are dropped again) and top-p, which would count them, is off.
            len(allowed) and self._top_p >= 1.0 and logits[top[-1]] < allowed["logit"][0] + MIN_P_CUT
        ):
            return -1
        kept = np.ascontiguousarray(allowed)
        arr = _as_array(kept)
        for i in range(self._grammar_at + 1, llama_cpp.llama_sampler_chain_n(self._chain)):
            llama_cpp.llama_sampler_apply(
                llama_cpp.llama_sampler_chain_get(self._chain, i), ctypes.byref(arr)
            )
        return int(kept["id"][arr.selected])

    def _apply(self, i: int, data: np.ndarray[Any, Any]) -> None:
        arr = _as_array(data)
        llama_cpp.llama_sampler_apply(llama_cpp.llama_sampler_chain_get(self._chain, i), ctypes.byref(arr))
        assert arr.size == len(data)  # penalties and grammar change logits, never the array

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None


# llama_token_data as numpy sees it: the candidates are built and read with array operations.
TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
CANDIDATES = 4 * TOP_K  # tokens checked against the grammar before the whole vocabulary is
# min-p keeps tokens whose logit is at least the best one's + log(MIN_P); a margin keeps float rounding out.
MIN_P_CUT = math.log(MIN_P) - 1e-3


def _candidates(ids: np.ndarray[Any, Any], logits: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    data = np.zeros(len(ids), dtype=TOKEN_DATA)
    data["id"] = ids
    data["logit"] = logits
    return data


def _as_array(data: np.ndarray[Any, Any]) -> Any:
    """A llama_token_data_array over ``data`` (which must outlive it)."""
    pointer = data.ctypes.data_as(llama_cpp.llama_token_data_p)
    return llama_cpp.llama_token_data_array(pointer, len(data), -1, False)
