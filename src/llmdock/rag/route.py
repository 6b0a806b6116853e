"""Before retrieval: a follow-up question rewritten to stand alone, and a knowledge base chosen among several.

- :class:`Rewriter` (``rag.rewrite_model``): "And in 3.12?" retrieves nothing useful on its own. When the
  chat has earlier turns (the client's, or the ``memory`` stage's session history), the configured model is
  asked, at temperature 0, to rewrite the last user turn into one standalone question using them; retrieval
  (and the router) use the rewrite, while the model still answers the question as asked. A rewrite that comes
  back empty, or a rewriter that fails, leaves the question as it was (the request is not failed for it).
- :class:`Router` (a model with ``knowledge_base: [A, B, …]``): the question's embedding is compared, by
  cosine, with one vector per knowledge base — its chunks' mean vector (``rag.route_by: content``, nothing to
  write) or its description's (``description``: ``llmdock kb describe``); the closest base answers. Vectors
  are kept per knowledge base version. Each base's question vector is in that base's own embedding model.

``llmdock kb evaluate`` scores both where they are used (``llmdock.rag.kbeval``): retrieval of the
follow-up questions with and without the rewrite, and the share of questions routed to the knowledge base
that generated them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from llmdock.backends.base import GenerationRequest, SamplingParams
from llmdock.errors import ConfigError, LlmdockError
from llmdock.pipeline.env import StageEnv
from llmdock.pipeline.stages import flatten_content
from llmdock.rag.index import KbIndex
from llmdock.rag.retrieve import Retriever

RouteBy = Literal["content", "description"]
REWRITE_SYSTEM = (
    "You rewrite the user's last question so that it can be understood without the conversation: replace "
    "'it', 'that' and similar words with what they refer to. Keep its meaning; do not answer it. Reply with "
    "the rewritten question only."
)
HISTORY_TURNS = 6  # earlier messages shown to the rewriter, newest last
TURN_CHARS = 600  # each clipped to this many characters
REWRITE_TOKENS = 64


def earlier_turns(messages: Sequence[dict[str, Any]], turn: int) -> list[tuple[str, str]]:
    """The user and assistant turns before message ``turn``, newest last, at most ``HISTORY_TURNS``."""
    found = [
        (str(m.get("role")), flatten_content(m.get("content")))
        for m in messages[:turn]
        if m.get("role") in ("user", "assistant")
    ]
    return found[-HISTORY_TURNS:]


class Rewriter:
    """A follow-up question made standalone by ``model`` from the conversation before it."""

    def __init__(self, env: StageEnv, model: str) -> None:
        self.env, self.model = env, model

    async def rewrite(self, history: Sequence[tuple[str, str]], question: str) -> str | None:
        """The standalone question, or None when there is no history or no usable rewrite."""
        if not history or not question.strip():
            return None
        shown = "\n".join(f"{role}: {text[:TURN_CHARS]}" for role, text in history)
        messages = [
            {"role": "system", "content": REWRITE_SYSTEM},
            {"role": "user", "content": f"Conversation:\n{shown}\n\nLast question: {question}"},
        ]
        params = SamplingParams(max_tokens=REWRITE_TOKENS, temperature=0.0, seed=0)
        req = GenerationRequest("chat", params, messages=messages)
        try:
            backend = self.env.backend(self.model)
            await backend.ensure_started()
            backend.prepare(req)
            text = (await backend.generate(req)).text
        except LlmdockError:
            return None
        line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        return line.strip("\"'") or None


@dataclass(frozen=True)
class Routed:
    kb: str
    scores: dict[str, float]  # each candidate's cosine similarity to the question


class Router:
    """Picks the knowledge base closest to a question among several."""

    def __init__(self, retriever: Retriever, by: RouteBy = "content") -> None:
        self.retriever, self.by = retriever, by
        self._vectors: dict[tuple[str, int, str], np.ndarray] = {}

    async def route(self, names: Sequence[str], question: str) -> Routed:
        if len(names) == 1:
            return Routed(names[0], {})
        scores: dict[str, float] = {}
        asked: dict[str, np.ndarray] = {}  # the question's vector by embedding model
        for name in names:
            index = self.retriever.index(name)
            model = index.kb.embedding_model
            if model not in asked:
                asked[model] = await self.retriever.embed_query(index, question)
            vector = await self._vector(index)
            scores[name] = float(vector @ asked[model]) if vector.size else -1.0  # an empty base: last
        best = max(names, key=lambda n: scores[n])  # ties: the first listed
        return Routed(best, scores)

    async def _vector(self, index: KbIndex) -> np.ndarray:
        key = (index.kb.name, index.kb.version, self.by)
        if key not in self._vectors:
            self._vectors = {k: v for k, v in self._vectors.items() if k[0] != index.kb.name}
            self._vectors[key] = await self._compute(index)
        return self._vectors[key]

    async def _compute(self, index: KbIndex) -> np.ndarray:
        kb = index.kb
        if self.by == "description":
            if not kb.description.strip():
                raise ConfigError(
                    f"knowledge base {kb.name!r} has no description to route by: llmdock kb describe "
                    f"{kb.name} TEXT, or set rag.route_by: content",
                    where="rag.route_by",
                )
            return await self.retriever.embed_query(index, kb.description)
        vectors = index.rows.vectors
        if not len(vectors):
            return np.zeros(0, dtype=np.float32)
        mean: np.ndarray = np.asarray(vectors.mean(axis=0), dtype=np.float32)
        norm = float(np.linalg.norm(mean))
        return mean / norm if norm else mean
