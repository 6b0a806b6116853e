"""Detectors configured by rules rather than trained: prompt length, regex/keyword lists, banned topics and
language. Each is exact and cheap; the lists come from the policy."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from llmdock.guards.base import CLEAN, BaseDetector, DetectorParams, Finding, GuardText, Verdict
from llmdock.guards.normalize import normalize
from llmdock.guards.policy import DetectorEnv


class LengthParams(DetectorParams):
    max_chars: int = Field(default=32_000, gt=0)


class PromptLengthDetector(
    BaseDetector,
    name="prompt_length",
    directions={"input"},
    Params=LengthParams,
    action="block",
    roles=("user", "tool", "prompt", "system"),
):
    """A text longer than ``max_chars`` (long prompts are a vector for context flooding and cost)."""

    def __init__(self, params: LengthParams, env: DetectorEnv) -> None:
        self.max_chars = params.max_chars

    async def detect(self, item: GuardText) -> Verdict:
        if len(item.text) <= self.max_chars:
            return CLEAN
        return Verdict(
            1.0, "length", [Finding(self.max_chars, len(item.text), "too-long")], {"chars": len(item.text)}
        )


class PatternParams(DetectorParams):
    patterns: list[str] = Field(default_factory=list, description="regular expressions (Python syntax)")
    keywords: list[str] = Field(default_factory=list, description="words or phrases, matched as whole words")
    case_sensitive: bool = False
    normalized: bool = Field(default=True, description="also match the de-obfuscated text")

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} does not compile: {exc}") from None
        return value

    @model_validator(mode="after")
    def _something(self) -> PatternParams:
        if not self.patterns and not self.keywords:
            raise ValueError("give patterns or keywords")
        return self


class PatternDetector(
    BaseDetector, name="regex", directions={"input", "output"}, Params=PatternParams, action="block"
):
    """Custom regex and keyword lists; the spans are the matches (so ``redact`` removes just them)."""

    label = "pattern"

    def __init__(self, params: PatternParams, env: DetectorEnv) -> None:
        flags = 0 if params.case_sensitive else re.IGNORECASE
        parts = list(params.patterns) + [r"\b" + re.escape(k) + r"\b" for k in params.keywords]
        self.pattern = re.compile("|".join(f"(?:{p})" for p in parts), flags)
        self.normalized = params.normalized

    async def detect(self, item: GuardText) -> Verdict:
        findings = [
            Finding(m.start(), m.end(), self.label)
            for m in self.pattern.finditer(item.text)
            if m.end() > m.start()
        ]
        if findings:
            return Verdict(1.0, "pattern", findings)
        if self.normalized:
            norm = item.normalized()
            if norm.tricks and self.pattern.search(norm.text):
                return Verdict(1.0, norm.layer, [Finding(0, len(item.text), self.label)])
        return CLEAN


class TopicParams(DetectorParams):
    topics: dict[str, list[str]] = Field(description="topic name -> keywords or phrases that mean it")

    @field_validator("topics")
    @classmethod
    def _not_empty(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if not value or not all(value.values()):
            raise ValueError("give each topic at least one keyword")
        return value


class BannedTopicsDetector(
    BaseDetector,
    name="banned_topics",
    directions={"input", "output"},
    Params=TopicParams,
    action="block",
    roles=("user", "prompt", "answer"),
):
    """Topics a deployment will not discuss, each defined by its keywords (matched on the normalised text)."""

    def __init__(self, params: TopicParams, env: DetectorEnv) -> None:
        self.topics = {
            topic: re.compile("|".join(r"\b" + re.escape(normalize(k).text) + r"\b" for k in words))
            for topic, words in params.topics.items()
        }

    async def detect(self, item: GuardText) -> Verdict:
        view = item.normalized().text
        for topic, pattern in self.topics.items():
            match = pattern.search(view)
            if match is not None:
                start = item.text.lower().find(match.group())
                span = (start, start + len(match.group())) if start >= 0 else (0, len(item.text))
                return Verdict(1.0, f"topic:{topic}", [Finding(*span, topic)], {"topic": topic})
        return CLEAN


class LanguageParams(DetectorParams):
    allowed: list[str] = Field(min_length=1, description="ISO 639-1 codes, e.g. [en, fr]")
    min_chars: int = Field(default=20, ge=1, description="shorter texts are not judged")
    sample_chars: int = Field(default=300, ge=20, description="how much of the text is identified")


class LanguageDetector(
    BaseDetector,
    name="language",
    directions={"input", "output"},
    Params=LanguageParams,
    roles=("user", "prompt", "answer"),
):
    """A text in a language outside ``allowed`` (py3langid, 97 languages; its model ships in the package).

    Only the first ``sample_chars`` characters are identified: a longer sample rarely changes the answer
    and costs about 7 ms per 1,000 characters.
    """

    def __init__(self, params: LanguageParams, env: DetectorEnv) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self.identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self.params = params

    async def detect(self, item: GuardText) -> Verdict:
        if len(item.text.strip()) < self.params.min_chars:
            return CLEAN
        language, probability = self.identifier.classify(item.text[: self.params.sample_chars])
        if language in self.params.allowed:
            return Verdict(0.0, "langid", details={"language": language})
        return Verdict(
            float(probability),
            "langid",
            [Finding(0, len(item.text), f"lang-{language}")],
            {"language": language},
        )
