"""Detectors for answers: system-prompt leakage, URLs outside an allow-list, refusals, ungrounded claims."""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
from pydantic import Field

from llmdock.guards.base import CLEAN, BaseDetector, DetectorParams, Finding, GuardText, Verdict
from llmdock.guards.normalize import normalize
from llmdock.guards.policy import DetectorEnv

_WORD = re.compile(r"\w+")


def _words(text: str) -> list[re.Match[str]]:
    return list(_WORD.finditer(text.lower()))


class LeakageParams(DetectorParams):
    canary: bool = Field(default=False, description="put a canary token in the system prompt and look for it")
    min_words: int = Field(default=8, ge=3, description="a run of this many system-prompt words counts")


class LeakageDetector(
    BaseDetector, name="leakage", directions={"output"}, Params=LeakageParams, action="flag"
):
    """The answer repeats the system prompt: its canary token, or long runs of its words.

    Score: 1 for the canary; otherwise the larger of the share of the system prompt the answer repeats
    and the longest repeated run over twice ``min_words`` (a run of ``min_words`` words scores 0.5).
    """

    def __init__(self, params: LeakageParams, env: DetectorEnv) -> None:
        self.n = params.min_words

    async def detect(self, item: GuardText) -> Verdict:
        if item.canary and item.canary in item.text:
            start = item.text.index(item.canary)
            return Verdict(1.0, "canary", [Finding(start, start + len(item.canary), "canary")])
        system = [m.group() for m in _words(item.system)]
        if len(system) < self.n:
            return CLEAN
        grams = {tuple(system[i : i + self.n]) for i in range(len(system) - self.n + 1)}
        answer = _words(item.text)
        tokens = [m.group() for m in answer]
        covered = np.zeros(len(tokens), dtype=bool)
        for i in range(len(tokens) - self.n + 1):
            if tuple(tokens[i : i + self.n]) in grams:
                covered[i : i + self.n] = True
        if not covered.any():
            return CLEAN
        findings = []
        longest = 0
        i = 0
        while i < len(tokens):
            if covered[i]:
                j = i
                while j + 1 < len(tokens) and covered[j + 1]:
                    j += 1
                findings.append(Finding(answer[i].start(), answer[j].end(), "system-prompt"))
                longest = max(longest, j - i + 1)
                i = j + 1
            else:
                i += 1
        share = min(1.0, covered.sum() / len(system))
        score = min(1.0, max(share, longest / (2 * self.n)))
        return Verdict(
            score, "overlap", findings, {"repeated_words": int(covered.sum()), "longest_run": longest}
        )


_URL = re.compile(r"\bhttps?://[^\s<>\"'`)\]]+|\bwww\.[^\s<>\"'`)\]]+", re.I)


class UrlParams(DetectorParams):
    allow: list[str] = Field(default_factory=list, description="domains allowed (subdomains included)")
    allow_from_context: bool = Field(default=True, description="also allow URLs the request itself contains")


class UrlDetector(BaseDetector, name="urls", directions={"output"}, Params=UrlParams, action="redact"):
    """Links in the answer to domains outside ``allow`` (and, by default, not given in the request)."""

    def __init__(self, params: UrlParams, env: DetectorEnv) -> None:
        self.allow = [d.lower().lstrip(".") for d in params.allow]
        self.from_context = params.allow_from_context

    def _allowed(self, host: str, known: set[str]) -> bool:
        return host in known or any(host == d or host.endswith("." + d) for d in self.allow)

    async def detect(self, item: GuardText) -> Verdict:
        known = {_host(m.group()) for m in _URL.finditer(item.context)} if self.from_context else set()
        findings = [
            Finding(m.start(), m.end(), "url")
            for m in _URL.finditer(item.text)
            if not self._allowed(_host(m.group().rstrip(".,;:!?")), known)
        ]
        return Verdict(1.0, "allow-list", findings) if findings else CLEAN


def _host(url: str) -> str:
    return (urlsplit(url if "://" in url else "http://" + url).hostname or "").lower()


REFUSAL = re.compile(
    r"\b(?:i\s*(?:'m|am)\s+(?:sorry|afraid|not\s+comfortable)|i\s+apologi[sz]e|my\s+apologies|"
    r"(?:i|we)\s+(?:can(?:'t|not)|won't|will\s+not|am\s+(?:not\s+able|unable)|'m\s+unable)"
    r"\s+(?:help|assist|provide|comply|do\s+that|fulfil|support|create|write|share|answer|engage|give)|"
    r"as\s+an\s+ai(?:\s+language\s+model)?|(?:against|violates?)\s+my\s+(?:guidelines|policies|programming)|"
    r"i\s+must\s+(?:decline|refuse)|i(?:'m|\s+am)\s+not\s+(?:able|allowed|permitted)\s+to|"
    r"(?:it\s+is|it's)\s+(?:illegal|unethical|not\s+appropriate|inappropriate)\s+(?:and\s+\w+\s+)?to|"
    r"\b(?:is|are)\s+(?:illegal\s+and\s+unethical|unethical\s+and\s+illegal))"
)


class RefusalDetector(
    BaseDetector, name="refusal", directions={"output"}, Params=DetectorParams, action="log"
):
    """The answer refuses: refusal phrasing in its first 300 characters.

    Rules, not a classifier: the only human-labelled refusal data a package ships (PyRIT's scorer evals)
    is about 100 answers labelled against their objectives, too few to train on, so it serves as the
    bench's test set instead.
    """

    def __init__(self, params: DetectorParams, env: DetectorEnv) -> None:
        pass

    async def detect(self, item: GuardText) -> Verdict:
        head = normalize(item.text[:300]).text
        match = REFUSAL.search(head)
        if match is None:
            return CLEAN
        return Verdict(0.9, "heuristic:refusal-phrase", [Finding(match.start(), match.end(), "refusal")])


_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")


class GroundingParams(DetectorParams):
    method: Literal["lexical", "embedding", "llm"] = "lexical"
    min_support: float = Field(
        default=0.5, gt=0, le=1, description="share of a claim's words the context must hold"
    )
    min_context_words: int = Field(
        default=10, ge=1, description="distinct content words; fewer: nothing to ground in"
    )
    similarity: float = Field(
        default=0.5, gt=0, le=1, description="embedding: cosine a claim needs to a context chunk"
    )
    judge_model: str = Field(default="", description="llm: the model asked (empty = the default model)")


class GroundingDetector(BaseDetector, name="grounding", directions={"output"}, Params=GroundingParams):
    """Claims in a RAG answer that the provided context (system, tool and user messages) does not support.

    Each sentence with at least four content words is a claim. ``lexical`` (default, sub-millisecond):
    a claim is unsupported when under ``min_support`` of its content words, or any of its numbers, occur in
    the context. ``embedding``: unsupported when no context chunk is within ``similarity`` (all-MiniLM-L6-v2).
    ``llm``: the lexically unsupported claims are put to the LLM as a yes/no question (slow; for offline
    checks, not the hot path). Score: the share of the answer's claims that are unsupported.
    """

    def __init__(self, params: GroundingParams, env: DetectorEnv) -> None:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        self.params = params
        self.env = env
        self.stop = ENGLISH_STOP_WORDS
        self.awaits = params.method != "lexical"

    def _content(self, text: str) -> list[str]:
        return [
            w for w in (m.group() for m in _words(text)) if w not in self.stop and (len(w) > 2 or w.isdigit())
        ]

    async def detect(self, item: GuardText) -> Verdict:
        context = set(self._content(item.context))
        if len(context) < self.params.min_context_words:
            return Verdict(0.0, "no-context")
        claims = [
            (m.start(), m.end()) for m in _SENTENCE.finditer(item.text) if len(self._content(m.group())) >= 4
        ]
        if not claims:
            return CLEAN
        unsupported = []
        for start, end in claims:
            words = self._content(item.text[start:end])
            support = sum(w in context for w in words) / len(words)
            numbers_missing = any(w.isdigit() and w not in context for w in words)
            if support < self.params.min_support or numbers_missing:
                unsupported.append((start, end))
        layer = "lexical"
        if self.params.method == "embedding":
            unsupported, layer = await self._by_embedding(item, claims), "embedding"
        elif self.params.method == "llm" and unsupported:
            unsupported, layer = await self._by_judge(item, unsupported), "llm-judge"
        findings = [Finding(s, e, "unsupported") for s, e in unsupported]
        return Verdict(len(unsupported) / len(claims), layer, findings, {"claims": len(claims)})

    async def _by_embedding(self, item: GuardText, claims: list[tuple[int, int]]) -> list[tuple[int, int]]:
        stages = self.env.stages
        assert stages is not None, "grounding by embedding needs the runtime's models"
        backend = stages.backend(stages.settings.default_embedding_model)
        chunks = [c.group() for c in _SENTENCE.finditer(item.context) if c.group().strip()][:256]
        vectors = np.asarray((await backend.embed(chunks + [item.text[s:e] for s, e in claims])).vectors)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        best = (vectors[len(chunks) :] @ vectors[: len(chunks)].T).max(axis=1)
        return [c for c, sim in zip(claims, best, strict=True) if sim < self.params.similarity]

    async def _by_judge(self, item: GuardText, claims: list[tuple[int, int]]) -> list[tuple[int, int]]:
        from llmdock.backends.base import GenerationRequest, SamplingParams

        stages = self.env.stages
        assert stages is not None, "grounding by an LLM judge needs the runtime's models"
        backend: Any = stages.backend(self.params.judge_model or stages.settings.default_model)
        await backend.ensure_started()
        kept = []
        for start, end in claims:
            question = (
                f"Context:\n{item.context[-3000:]}\n\nClaim: {item.text[start:end].strip()}\n\n"
                "Does the context support the claim? Answer yes or no."
            )
            req = GenerationRequest(
                "chat",
                SamplingParams(max_tokens=3, temperature=0),
                messages=[{"role": "user", "content": question}],
            )
            backend.prepare(req)
            answer = (await backend.generate(req)).text.strip().lower()
            if not answer.startswith("yes"):
                kept.append((start, end))
        return kept
