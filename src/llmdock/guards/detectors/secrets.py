"""Secrets and credentials: detect-secrets' plugins, run over prompts and answers.

detect-secrets (Yelp, Apache-2.0) knows the shapes of two dozen credential kinds: AWS, GitHub, GitLab,
Slack, Stripe, OpenAI, private keys, JWTs, basic-auth URLs … Its ``scan_line`` runs every plugin with
its filters and costs about 8 ms per 1,000 characters while answering without offsets, so the regex
plugins' own patterns (``denylist``) are used here directly: the same shapes, with the spans a redaction
needs, in about 0.5 ms, and about 0.15 ms as most shapes need a long token (``required_run``) and are
skipped when the text holds none; most others need a literal (``BEGIN RSA PRIVATE KEY``, ``eyJ``, ``://``) and
are skipped when the text lacks it (``required_literals``). Its high-entropy plugins are meant for source code and fire on ordinary words in
prose; here the entropy layer only looks at long tokens mixing letters and digits (``entropy: true``).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from llmdock.guards.base import CLEAN, BaseDetector, DetectorParams, Finding, GuardText, Verdict
from llmdock.guards.policy import DetectorEnv
from llmdock.guards.regexes import required_literals, required_run

_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{24,}={0,2}")
_RUN = re.compile(r"[\w\-]+")
SKIPPED = {"Public IP (ipv4)"}  # an address is not a credential (PII detection covers it)


class SecretsParams(DetectorParams):
    entropy: bool = Field(default=True, description="also flag long random-looking tokens")
    entropy_limit: float = Field(
        default=4.5, gt=0, le=8, description="Shannon entropy (bits/char) of a token"
    )
    skip: list[str] = Field(default_factory=list, description="detect-secrets plugin types to leave out")


class SecretsDetector(
    BaseDetector, name="secrets", directions={"input", "output"}, Params=SecretsParams, action="redact"
):
    def __init__(self, params: SecretsParams, env: DetectorEnv) -> None:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.plugins.base import RegexBasedDetector
        from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString

        skip = SKIPPED | set(params.skip)
        plugins: dict[str, Any] = get_mapping_from_secret_type_to_class()
        self.patterns: list[tuple[str, re.Pattern[str], int, tuple[str, ...] | None]] = [
            (kind, pattern, required_run(pattern), required_literals(pattern))
            for kind, cls in plugins.items()
            if issubclass(cls, RegexBasedDetector) and kind not in skip
            for pattern in cls.denylist
        ]
        self.entropy = Base64HighEntropyString(limit=params.entropy_limit) if params.entropy else None

    async def detect(self, item: GuardText) -> Verdict:
        text = item.text
        longest = max(map(len, _RUN.findall(text)), default=0)
        findings = [
            Finding(m.start(), m.end(), _label(kind))
            for kind, pattern, run, needles in self.patterns
            # most credential shapes need a long token, or a literal ("BEGIN RSA", "eyJ"): skip them when
            # the text has none (exact: such a pattern cannot match there)
            if run <= longest and (needles is None or any(n in text for n in needles))
            for m in pattern.finditer(text)
            if m.end() > m.start()
        ]
        layer = "detect-secrets"
        if self.entropy is not None:
            for m in _TOKEN.finditer(text):
                token = m.group()
                if any(f.start <= m.start() < f.end for f in findings):
                    continue
                mixed = any(c.isdigit() for c in token) and any(c.isalpha() for c in token)
                if mixed and self.entropy.calculate_shannon_entropy(token) > self.entropy.entropy_limit:
                    findings.append(Finding(m.start(), m.end(), "high-entropy-token", 0.8))
        if not findings:
            return CLEAN
        if all(f.label == "high-entropy-token" for f in findings):
            layer = "entropy"
        return Verdict(max(f.score for f in findings), layer, findings)


def _label(kind: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")
