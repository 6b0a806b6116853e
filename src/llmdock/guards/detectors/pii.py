"""PII in prompts and answers: an adapter over llmdock.privacy's Presidio engine (the same recognizers,
checksums and entity names the privacy settings use, so a guard and the trace redaction agree)."""

from __future__ import annotations

from pydantic import Field

from llmdock.config import DEFAULT_PHONE_REGIONS, DEFAULT_PII_ENTITIES
from llmdock.guards.base import CLEAN, BaseDetector, DetectorParams, Finding, GuardText, Verdict
from llmdock.guards.policy import DetectorEnv


class PiiParams(DetectorParams):
    entities: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PII_ENTITIES),
        description="Presidio entity names and llmdock's (STREET_ADDRESS, ID_NUMBER, DATE_OF_BIRTH, AGE); "
        "LOCATION, NRP, ORGANIZATION add spaCy NER",
    )
    score_threshold: float = Field(default=0.4, ge=0, le=1, description="Presidio's confidence to report")
    phone_regions: list[str] = Field(default_factory=lambda: list(DEFAULT_PHONE_REGIONS))
    ner: bool = Field(
        default=False, description="spaCy NER for PERSON besides name lists (~25 ms per 1,000 chars)"
    )


class PiiDetector(BaseDetector, name="pii", directions={"input", "output"}, Params=PiiParams):
    """Each finding is a span labelled with its entity (``email-address``…) and Presidio's confidence; the
    engine already keeps only findings at or above ``score_threshold``, so any finding makes the verdict 1.

    Default action ``flag``: redacting a user's own e-mail from their prompt is often not wanted; set
    ``action: redact`` to keep PII from the model (or ``block``).
    """

    def __init__(self, params: PiiParams, env: DetectorEnv) -> None:
        from llmdock.privacy.pii_engine import shared_engine

        # The engine of the same settings is the privacy policy's too (one per process): the trace's PII
        # mask then reuses what this detector found (llmdock.privacy.findings) instead of looking again.
        self.engine = shared_engine(
            tuple(params.entities),
            "en",
            params.score_threshold,
            tuple(params.phone_regions),
            ner=params.ner,
        )
        self.engine.find("warm up: a@example.com")  # the first call builds spaCy's tokenizer caches

    async def detect(self, item: GuardText) -> Verdict:
        analysis = self.engine.analyse(item.text)
        ctx = item.ctx
        # A streamed answer is checked again as it grows: keeping every prefix would cost memory for nothing.
        if ctx is not None and not (ctx.stream and item.direction == "output"):
            if ctx.pii_analyses is None:
                ctx.pii_analyses = {}
            ctx.pii_analyses[(self.engine, item.text)] = analysis
        found = analysis.findings
        if not found:
            return CLEAN
        findings = [Finding(f.start, f.end, f.entity.lower().replace("_", "-"), f.score) for f in found]
        return Verdict(1.0, "presidio", findings, {"best_presidio_score": max(f.score for f in findings)})
