"""Prompt injection and jailbreak attempts, direct (user turns) and indirect (tool results, documents).

Layers, cheapest first, each recorded as the ``layer`` of the verdict when it decides:

1. normalisation (:mod:`llmdock.guards.normalize`): homoglyphs, invisible characters, leetspeak, spacing
   and base64 are undone; ASCII smuggled in Unicode tag characters is an attack by itself;
2. heuristics: phrasings that are injections in any context (``ignore all previous instructions``,
   ``developer mode enabled``, chat-template control tokens in user text, markdown images that carry
   data out), matched on the normalised text;
3. a classifier trained by llmdock (:mod:`llmdock.guards.training`) on labelled injection, jailbreak and
   benign prompts and tool results (AgentDojo's, with and without its attacks) from pinned PyPI packages;
   long texts are also scored in windows so an instruction buried in a retrieved document is not diluted.
   A flagged text's structure cues (:mod:`llmdock.guards.cues`: addressed to the model, task take-over,
   role switch…) are named in the verdict, and a short request whose only cue is an "ignore" aimed at
   something other than the model's instructions is let through (capped at 0.45);
   ``model: embedding`` or ``both`` swaps in the heavier classifier of :mod:`llmdock.guards.embedding`,
   ``model: finetuned`` the fine-tuned MiniLM of :mod:`llmdock.guards.finetuned` (a text's windows are
   scored in one batch);
4. optionally, embedding similarity to known attacks (``embedding: true``; all-MiniLM-L6-v2, about
   12 ms per text on one core, so off by default). It is a weak layer: it recognises close variants of
   known jailbreaks but adds little recall over the classifier on the test split.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
from pydantic import Field

from llmdock.guards.base import BaseDetector, DetectorParams, Finding, GuardText, Verdict
from llmdock.guards.cues import cues_in
from llmdock.guards.embedding import SpanScorer
from llmdock.guards.embedding import ensure_model as ensure_embedding_model
from llmdock.guards.features import Ngrams
from llmdock.guards.finetuned import ensure_model as ensure_finetuned_model
from llmdock.guards.normalize import warm_up
from llmdock.guards.policy import DetectorEnv
from llmdock.guards.regexes import required_groups
from llmdock.guards.training import data_path, ensure_model, load_rows

_IGNORE = r"(?:ignore|disregard|forget|skip|override|bypass|drop)"
_PRIOR = r"(?:all\s+|any\s+|the\s+|your\s+|my\s+|of\s+)*(?:previous|prior|above|earlier|preceding|former|initial|original|system|old)"
_RULES = r"(?:instructions?|prompts?|rules|directions|guidelines|directives|context|messages?|commands?|constraints|programming)"
HEURISTICS: list[tuple[str, float, re.Pattern[str]]] = [
    ("ignore-previous", 0.97, re.compile(rf"\b{_IGNORE}\s+(?:\w+\s+){{0,2}}{_PRIOR}\s+(?:\w+\s+)?{_RULES}")),
    ("ignore-your-instructions", 0.93, re.compile(rf"\b{_IGNORE}\s+(?:all\s+)?your\s+(?:\w+\s+)?{_RULES}")),
    (
        "ignore-rules",
        0.9,
        re.compile(
            rf"\b{_IGNORE}\s+(?:all\s+|any\s+|your\s+|the\s+)+(?:safety\s+|content\s+|ethical\s+)?(?:rules|guidelines|restrictions|filters|policies)\b"
        ),
    ),
    (
        "new-instructions",
        0.9,
        re.compile(r"(?:^|\W)(?:new|updated|real|actual|important)\s+(?:system\s+)?instructions?\s*[:\-*]"),
    ),
    (
        "reveal-system-prompt",
        0.93,
        re.compile(
            r"\b(?:reveal|show|print|repeat|output|display|leak|tell\s+me|give\s+me|what\s+(?:is|are|was|were))\s+(?:me\s+)?(?:your|the)\s+(?:full\s+|exact\s+|entire\s+)?(?:system|initial|hidden|original|secret|internal)\s+(?:prompt|instructions?|message|rules|configuration)"
        ),
    ),
    (
        "mode-switch",
        0.95,
        re.compile(
            r"\b(?:developer|dan|god|jailbreak|jailbroken|unrestricted|unfiltered|evil|sudo|admin)\s+mode\b(?:\s+(?:enabled|on|activated))?"
        ),
    ),
    ("do-anything-now", 0.97, re.compile(r"\bdo\s+anything\s+now\b")),
    (
        "no-restrictions",
        0.85,
        re.compile(
            r"\b(?:without|free\s+(?:of|from)|no(?:\s+longer)?\s+(?:have|bound\s+by)?)\s+(?:any\s+)?(?:ethical|moral|content|safety)?\s*(?:restrictions|limitations|filters|guidelines|censorship)\b"
        ),
    ),
    (
        "you-are-now",
        0.8,
        re.compile(
            r"\byou\s+are\s+(?:now|no\s+longer)\s+(?:an?\s+)?(?:unrestricted|unfiltered|free|evil|dan|jailbroken|chatgpt|bound)"
        ),
    ),
    (
        "control-tokens",
        0.9,
        re.compile(
            r"<\|im_start\|>|<\|im_end\|>|<\|system\|>|<<sys>>|\[/?inst\]|<\|start_header_id\|>|<\|endoftext\|>|^\s*#{2,}\s*system\s*:",
            re.M,
        ),
    ),
    ("markdown-exfiltration", 0.9, re.compile(r"!\[[^\]]*\]\(\s*https?://[^)\s]*\?[^)\s]*=")),
]


MUNDANE_CHARS, MUNDANE_CAP = 300, 0.45


class InjectionParams(DetectorParams):
    window_chars: int = Field(default=600, ge=100, description="longer texts are also scored in windows")
    model: Literal["ngram", "embedding", "both", "finetuned"] = Field(
        default="ngram",
        description="the classifier: n-grams; or all-MiniLM-L6-v2 embeddings alone or with the n-grams "
        "(heavier: see llmdock.guards.embedding); or all-MiniLM-L6-v2 fine-tuned here (heaviest: see "
        "llmdock.guards.finetuned)",
    )
    embedding: bool = Field(default=False, description="add embedding similarity to known attacks")
    embedding_threshold: float = Field(default=0.7, gt=0, le=1)


class InjectionDetector(
    BaseDetector,
    name="injection",
    directions={"input"},
    Params=InjectionParams,
    action="block",
    on_error="closed",
    roles=("user", "tool", "prompt"),
):
    def __init__(self, params: InjectionParams, env: DetectorEnv) -> None:
        self.params = params
        self.env = env
        self.model: SpanScorer
        if params.model == "ngram":
            self.model = ensure_model(env.model_dir, "injection")
        elif params.model == "finetuned":
            self.model = ensure_finetuned_model(env.model_dir, "injection")
        else:
            self.model = ensure_embedding_model(env.model_dir, "injection", params.model)
        self.needles = [required_groups(pattern) for _, _, pattern in HEURISTICS]
        warm_up()
        self.attacks: np.ndarray | None = None
        if params.embedding:
            self.awaits = True

    async def detect(self, item: GuardText) -> Verdict:
        norm = item.normalized()
        if "tag-smuggling" in norm.tricks:
            return Verdict(0.99, norm.layer, [Finding(0, len(item.text), "tag-smuggling", 0.99)])
        view = norm.text
        for (rule, score, pattern), groups in zip(HEURISTICS, self.needles, strict=True):
            if not all(any(n in view for n in group) for group in groups):
                continue  # the pattern cannot match without a string of each group: skip the search
            match = pattern.search(view)
            if match is not None:
                finding = _finding_in(item.text, match.group(), rule, score)
                return Verdict(score, _layer(f"heuristic:{rule}", norm.layer), [finding])
        score, where = self._classify(item.ngrams())
        layer = _layer("classifier", norm.layer)
        if self.params.embedding and score < 0.5:
            similarity = await self._similarity(item.text)
            if similarity >= self.params.embedding_threshold:
                return Verdict(similarity, "embedding", [Finding(0, len(item.text), "injection", similarity)])
        details: dict[str, Any] = {"classifier": round(score, 4)}
        if score >= 0.5:  # which structure cues the flagged text (or window) shows, to explain the verdict
            view = item.ngrams().text
            cues = details["cues"] = cues_in(view if where is None else view[where.start : where.end])
            if cues == ["override-other"] and len(view) <= MUNDANE_CHARS:
                # a short request whose only "ignore / forget / disregard" is aimed at something other than
                # the model's instructions ("please ignore case when you sort…"): the word, not an attack
                score, layer = MUNDANE_CAP, f"{layer}+mundane-override"
        findings = [Finding(0, len(item.text), "injection", score)] if where is None else [where]
        return Verdict(score, layer, findings, details)

    def _classify(self, grams: Ngrams) -> tuple[float, Finding | None]:
        """The whole text's score, or a window's when one scores higher (at most 16 windows)."""
        spans = self.spans(len(grams.text))
        best, *windows = self.model.score_spans(grams, spans)
        found = None
        for (start, end), score in zip(spans[1:], windows, strict=True):
            if score > best or (found is None and score >= 0.5 and score >= best - 0.05):
                best, found = (
                    max(best, score),
                    Finding(start, min(end or 0, len(grams.text)), "injection", score),
                )
        return best, found

    def spans(self, length: int) -> list[tuple[int, int | None]]:
        return window_spans(length, self.params.window_chars)

    async def _similarity(self, text: str) -> float:
        stages = self.env.stages
        if stages is None:
            return 0.0
        backend = stages.backend(stages.settings.default_embedding_model)
        if self.attacks is None:  # once: up to 40 known attacks from each source, spread over it
            by_source: dict[str, list[str]] = {}
            for row in load_rows(data_path(), "injection"):
                if row["label"] == 1:
                    by_source.setdefault(row["source"], []).append(row["text"][:1000])
            sample = [t for texts in by_source.values() for t in texts[:: max(1, len(texts) // 40)][:40]]
            self.attacks = _unit(np.asarray((await backend.embed(sample)).vectors, dtype=np.float32))
        query = _unit(np.asarray((await backend.embed([text[:2000]])).vectors, dtype=np.float32))
        return float((self.attacks @ query[0]).max())


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


def _layer(name: str, normalization: str) -> str:
    return f"{name}+{normalization}" if normalization else name


def _finding_in(text: str, matched: str, label: str, score: float) -> Finding:
    """The span in the original text when the match appears there as is (else the whole text)."""
    start = text.lower().find(matched)
    if start >= 0:
        return Finding(start, start + len(matched), label, score)
    return Finding(0, len(text), label, score)


def window_spans(length: int, size: int) -> list[tuple[int, int | None]]:
    """What the classifier scores in a normalised text of ``length`` characters: the whole text, then (when
    longer than ``size``) windows of ``size`` overlapping by at least half, at most 16, scored in one batch."""
    if length <= size:
        return [(0, None)]
    stride = max(size // 2, (length - size) // 15 + 1)
    return [(0, None), *((s, s + size) for s in range(0, length - size + stride, stride))]
