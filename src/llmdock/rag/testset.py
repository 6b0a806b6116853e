"""``llmdock kb testset``: questions with reference answers and their source chunks, written by a model.

Chunks are drawn with the seed (chunks shorter than ``MIN_CHARS`` are left out); each gets a kind in turn
(``simple``, ``complex``, ``distracting``, ``situational``, ``double``, ``conversational``: see
``INSTRUCTIONS``). ``double`` asks about a chunk and its nearest neighbour, found with the vectors already
stored in ``kb_embeddings`` (nothing is embedded again); ``distracting`` takes its irrelevant detail from a
neighbour too. The model is asked for JSON, made valid by construction where the backend can (the judge's
own ``ask_json``).

A small model writes many bad questions, so every one is checked before it is kept, and each rejection is
counted by its reason (``REASONS``): not a JSON answer; question too short; a duplicate of one kept; an
answer whose words are mostly not in the source text (SQuAD token precision below ``GROUNDED_AT``); and a
judge (evaluate's ``llm-rubric``, pass/fail) that says the source text does not answer it. A rejected
generation is retried (``retries`` times, another seed each time), and chunks are drawn until ``n`` are
kept or the chunks run out; an empty result raises an error giving the rejection counts.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from llmdock.backends.base import SamplingParams
from llmdock.errors import InvalidRequest
from llmdock.evaluate.case import Case, Check, Output
from llmdock.evaluate.metrics.judge import LlmRubricMetric, ask_json, enforcement_of
from llmdock.evaluate.metrics.overlap import squad_tokens
from llmdock.pipeline.env import StageEnv
from llmdock.rag import bases
from llmdock.rag.index import Rows, load_rows
from llmdock.rag.testset_file import KINDS, row
from llmdock.store import Store
from llmdock.structured.grammar import GrammarUnavailable, json_grammar, schema_grammar
from llmdock.structured.judge import judge
from llmdock.structured.plan import CompiledSchema, StructuredPlan
from llmdock.structured.schemas import SchemaValidator

MIN_CHARS = 200  # shorter chunks (a heading, a line of navigation) make poor questions
GROUNDED_AT = 0.5  # share of the answer's words that must be in the source text
MAX_TOKENS = 240  # a question and its answer (a conversational row: two of each)
REASONS = ("not JSON", "too short", "duplicate", "answer not in the text", "judged not answerable")
_TEXT = {"type": "string", "minLength": 1, "maxLength": 300}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"question": _TEXT, "answer": _TEXT},
    "required": ["question", "answer"],
}
FOLLOW_UP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"question": _TEXT, "answer": _TEXT, "follow_up": _TEXT, "follow_up_answer": _TEXT},
    "required": ["question", "answer", "follow_up", "follow_up_answer"],
}
SYSTEM = (
    "You write test questions for a search assistant from the text you are given. The answer must come "
    'from the text. Reply with only a JSON object: {"question": "...", "answer": "..."}.'
)
INSTRUCTIONS = {
    "simple": "Write one question that the text answers directly, and its answer.",
    "complex": (
        "Write one question whose answer needs reasoning over the text or a paraphrase of it (do not copy "
        "the text's wording into the question), and its answer."
    ),
    "distracting": (
        "Write one question that the text answers, which also mentions this plausible but irrelevant "
        "detail: {distractor}. The answer comes from the text only."
    ),
    "situational": (
        "Write one question a user in a concrete situation would ask (start with the situation, e.g. "
        "'I am writing a script that ...'), answered by the text, and its answer."
    ),
    "double": "Write one message asking two questions, one answered by text 1 and one by text 2, and "
    "an answer to both.",
    "conversational": (
        "Write a question the text answers and its answer, then a short follow-up question that only makes "
        "sense after the first one (it says 'it' or 'that' instead of naming the subject) and its answer, "
        'as {"question", "answer", "follow_up", "follow_up_answer"}.'
    ),
}
ANSWERABLE = (
    "The question can be answered from the context alone, and the answer to grade is what the context "
    "says. Fail it if the context does not contain the answer or the answer contradicts the context."
)


@dataclass
class Outcome:
    rows: list[dict[str, Any]]
    generated: int = 0  # model calls that wrote a candidate (retries included)
    rejected: Counter[str] = field(default_factory=Counter)
    candidates: int = 0  # chunks drawn


@dataclass(frozen=True)
class Candidate:
    slot: int
    kind: str
    rows: tuple[int, ...]  # row numbers of the source chunks (the first is the drawn one)
    distractor: str = ""


def grounded(answer: str, context: str) -> float:
    """The share of the answer's (SQuAD-normalised) words that occur in the context."""
    words = squad_tokens(answer)
    if not words:
        return 0.0
    known = set(squad_tokens(context))
    return sum(w in known for w in words) / len(words)


def neighbour(vectors: np.ndarray, at: int, texts: list[str]) -> int | None:
    """The row most similar to ``at`` by stored vector, other than itself and its copies."""
    order = np.argsort(-(vectors @ vectors[at]))
    return next((int(r) for r in order if r != at and texts[r] != texts[at]), None)


class TestsetGenerator:
    """Generate a test set from knowledge base ``kb`` with ``model``, checked by ``judge_model``."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        env: StageEnv,
        store: Store,
        kb: str,
        model: str,
        judge_model: str,
        *,
        seed: int = 0,
        kinds: tuple[str, ...] = KINDS,
        retries: int = 2,
        concurrency: int = 4,
        max_chunks: int | None = None,
        advance: Callable[[int], None] | None = None,
    ) -> None:
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise InvalidRequest(
                f"unknown kind {unknown[0] if unknown else ''!r} (known: {', '.join(KINDS)})"
            )
        self.kb = bases.get(store, kb)
        self.rows: Rows = load_rows(store, self.kb)  # the vectors stored at ingest: nothing is embedded
        self.backend = env.backend(model)
        self.model, self.judge_model = model, judge_model
        self.enforcement = enforcement_of(self.backend)
        check = Check("llm-rubric", {"rubric": ANSWERABLE, "verdict": "pass", "model": judge_model})
        self.judge = LlmRubricMetric(check, env)
        self.seed, self.kinds, self.retries, self.concurrency = seed, kinds, retries, concurrency
        self.max_chunks = max_chunks  # a budget: chunks asked about before giving up (None: all of them)
        self.advance = advance or (lambda kept: None)
        self._seen: set[tuple[str, ...]] = set()

    def drawn(self) -> list[int]:
        """The usable chunks' row numbers in the seed's order."""
        usable = [i for i, t in enumerate(self.rows.texts) if len(t.strip()) >= MIN_CHARS]
        random.Random(self.seed).shuffle(usable)
        return usable

    def candidate(self, slot: int, at: int) -> Candidate:
        """The drawn chunk with its kind and, where the kind needs one, its nearest neighbour."""
        r = self.rows
        kind = self.kinds[slot % len(self.kinds)]
        other = neighbour(r.vectors, at, r.texts) if kind in ("double", "distracting") else None
        if kind == "double" and other is not None:
            return Candidate(slot, kind, (at, other))
        if kind == "distracting" and other is not None:
            return Candidate(slot, kind, (at,), distractor=" ".join(r.texts[other].split()[:12]))
        return Candidate(slot, "simple" if kind in ("double", "distracting") else kind, (at,))

    async def run(self, n: int) -> Outcome:
        if n < 1:
            raise InvalidRequest("the test set needs at least one question", param="n")
        out = Outcome([])
        todo = list(enumerate(self.drawn()))[: self.max_chunks]
        kept: list[tuple[int, dict[str, Any]]] = []
        await self.backend.ensure_started()
        while todo and len(kept) < n:
            drawn, todo = todo[: self.concurrency], todo[self.concurrency :]
            wave = [self.candidate(slot, at) for slot, at in drawn]
            out.candidates += len(wave)
            made = await asyncio.gather(*(self._one(c, out) for c in wave))
            kept.extend((c.slot, r) for c, r in zip(wave, made, strict=True) if r is not None)
            self.advance(min(len(kept), n))
        out.rows = [r for _, r in sorted(kept, key=lambda x: x[0])[:n]]
        return out

    async def _one(self, cand: Candidate, out: Outcome) -> dict[str, Any] | None:
        for attempt in range(self.retries + 1):
            found = await self._generate(cand, self.seed * 1_000_003 + cand.slot * 31 + attempt)
            out.generated += 1
            reason = await self._reject(cand, found)
            if reason is None and found is not None:
                return self._row(cand, found)
            out.rejected[reason or "not JSON"] += 1
        return None

    def _messages(self, cand: Candidate) -> list[dict[str, Any]]:
        texts = [self.rows.texts[i].strip() for i in cand.rows]
        if len(texts) == 1:
            body = f"Text:\n{texts[0]}"
        else:
            body = "\n\n".join(f"Text {n}:\n{t}" for n, t in enumerate(texts, 1))
        ask = INSTRUCTIONS[cand.kind].format(distractor=cand.distractor)
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{body}\n\n{ask}"}]

    async def _generate(self, cand: Candidate, seed: int) -> dict[str, str] | None:
        schema = FOLLOW_UP_SCHEMA if cand.kind == "conversational" else SCHEMA
        grammar = _grammar(schema) if self.enforcement == "grammar" else None
        params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.7, seed=seed)
        answer = await ask_json(self.backend, self._messages(cand), schema, params, self.enforcement, grammar)
        plan = StructuredPlan(
            content="json_schema", content_schema=CompiledSchema(schema, SchemaValidator(schema), [])
        )
        verdict = judge(plan, answer.text, truncated=answer.truncated)
        if not verdict.ok:
            return None
        value = orjson.loads(verdict.text)
        return {k: str(value[k]).strip() for k in schema["required"]}

    async def _reject(self, cand: Candidate, found: dict[str, str] | None) -> str | None:
        """Why this generation is not kept, or None to keep it."""
        if found is None:
            return "not JSON"
        question = found.get("follow_up") or found["question"]
        if len(squad_tokens(question)) < 3 or not squad_tokens(found["answer"]):
            return "too short"
        key = tuple(squad_tokens(found["question"] + " " + found.get("follow_up", "")))
        if key in self._seen:
            return "duplicate"
        context = self._context(cand)
        answer = found.get("follow_up_answer") or found["answer"]
        if grounded(answer, context) < GROUNDED_AT:
            return "answer not in the text"
        case = Case(id=str(cand.slot), input=self._asked(found), expected=answer, context=context)
        score = await self.judge.score(case, Output(text=answer))
        if not score.passed:
            return "judged not answerable"
        if key in self._seen:  # another candidate of the wave kept the same question meanwhile
            return "duplicate"
        self._seen.add(key)
        return None

    def _context(self, cand: Candidate) -> str:
        return "\n\n".join(self.rows.texts[i].strip() for i in cand.rows)

    @staticmethod
    def _asked(found: dict[str, str]) -> str:
        if "follow_up" in found:
            return f"{found['question']} {found['answer']} {found['follow_up']}"
        return found["question"]

    def _row(self, cand: Candidate, found: dict[str, str]) -> dict[str, Any]:
        r = self.rows
        meta = {
            "kind": cand.kind,
            "source_chunks": [int(r.chunk_ids[i]) for i in cand.rows],
            "sources": [r.sources[i] for i in cand.rows],
            "synthetic": True,
            "kb": self.kb.name,
            "kb_version": self.kb.version,
            "generator": self.model,
            "judge": self.judge_model,
            "seed": self.seed,
        }
        row_id = f"{self.kb.name}-{cand.slot + 1:04d}"
        context = self._context(cand)
        if cand.kind == "conversational":
            turns = [
                {"role": "user", "content": found["question"]},
                {"role": "assistant", "content": found["answer"]},
                {"role": "user", "content": found["follow_up"]},
            ]
            return row(row_id, turns, found["follow_up_answer"], context, meta)
        return row(row_id, found["question"], found["answer"], context, meta)


def _grammar(schema: dict[str, Any]) -> str:
    try:
        return schema_grammar(schema)
    except GrammarUnavailable:
        return json_grammar("object")


def why_empty(out: Outcome) -> str:
    """One line on why no question was kept."""
    if not out.candidates:
        return f"no chunk of at least {MIN_CHARS} characters to ask about"
    counts = ", ".join(f"{why}: {k}" for why, k in out.rejected.most_common())
    return f"{out.generated} generated from {out.candidates} chunks, none kept ({counts})"
