"""The guard detectors as metrics: the same detector classes the online guards run, scoring answers offline.

``guard:<detector>`` (``guard:toxicity``, ``guard:pii``, ``guard:leakage``…) builds the detector registered
under that name (``env.plugins("detectors")``, so a plugin that replaces a built-in detector is measured too)
exactly as a guard policy builds it: its ``Params`` from the check's ``value`` when that is a mapping, and a
``DetectorEnv`` on the guard stage's model directory (``guards.model_dir``, else ``<home>/guards``). The
plain ``guard`` metric does the same for any registered detector named in its value
(``{detector: my_plugin, ...params}``).

These measure a harm: the value is the detector's verdict score (0..1) and the check **passes when the score
stays below the threshold** (default: the detector's own default threshold), i.e. "passed" means "no harm
found". The prefix keeps the names apart from every other metric: no built-in metric name has a colon, and
``guard:regex`` is not the ``regex`` metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError as PydanticValidationError

from llmdock.errors import LlmdockError
from llmdock.evaluate.case import BaseMetric, Case, Check, MetricError, Output, Score

if TYPE_CHECKING:  # the guards are imported when a check builds a detector, not when the metrics register
    from llmdock.guards.base import Detector, DetectorFactory, GuardText, Verdict
    from llmdock.guards.policy import DetectorEnv
    from llmdock.pipeline.env import StageEnv

PREFIX = "guard:"
SYSTEM_ROLES = ("system", "developer")
CONTEXT_ROLES = ("system", "developer", "tool", "user")  # what the guard stage grounds answers in


def detector_env(env: StageEnv | None) -> tuple[Mapping[str, DetectorFactory], DetectorEnv]:
    """The registered detectors and the env they are built with, as the guard stage builds them.

    Without a local runtime (a remote target evaluated alone) the built-in detectors are used, on the model
    directory the configuration names, and detectors that would ask a model skip that layer.
    """
    from llmdock.guards.policy import DetectorEnv

    if env is None:
        from llmdock.config import load_settings
        from llmdock.guards.detectors import BUILTIN_DETECTORS

        settings = load_settings()
        model_dir = settings.guards.model_dir or settings.home / "guards"
        return {d.name: d for d in BUILTIN_DETECTORS}, DetectorEnv(model_dir)
    settings = env.settings
    model_dir = settings.guards.model_dir or settings.home / "guards"
    return env.plugins("detectors"), DetectorEnv(model_dir, env)


def build_detector(
    label: str, name: str, params: Mapping[str, Any], env: StageEnv | None
) -> tuple[Detector, DetectorFactory]:
    """The detector ``name`` built from ``params`` (a MetricError names a bad parameter or a missing model)."""
    from llmdock.guards.policy import POLICY_FIELDS

    detectors, denv = detector_env(env)
    factory = detectors.get(name)
    if factory is None:
        raise MetricError(
            f"{label}: no detector {name!r} is registered (known: {', '.join(sorted(detectors))})"
        )
    policy = sorted(set(params) & set(POLICY_FIELDS))
    if policy:
        raise MetricError(
            f"{label}: {', '.join(policy)} belong to a guard policy; a check sets `threshold` beside `value`"
        )
    try:
        return factory(factory.Params.model_validate(dict(params)), denv), factory
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MetricError(f"{label}: value.{where}: {first['msg']}") from None
    except LlmdockError as exc:  # a model or package the detector needs is missing
        raise MetricError(f"{label}: {exc.message}") from None
    except ValueError as exc:  # a parameter only the detector itself can check
        raise MetricError(f"{label}: {exc}") from None


def _role_text(case: Case, roles: tuple[str, ...]) -> str:
    from llmdock.pipeline.stages import flatten_content

    return "\n".join(flatten_content(m.get("content")) for m in case.messages or [] if m.get("role") in roles)


def guard_text(case: Case, output: Output) -> GuardText:
    """The answer as the ``guard_out`` stage shows it to a detector: with the case's system prompt (its
    system messages) and the context the answer should rest on (the case's ``context``, else what its
    messages give, as the guard stage takes it)."""
    from llmdock.guards.base import GuardText

    context = case.context
    if context is None:
        context = _role_text(case, CONTEXT_ROLES) if case.messages else (case.input or "")
    return GuardText(output.text, "answer", "output", _role_text(case, SYSTEM_ROLES), context)


def describe(verdict: Verdict) -> str:
    """A one-line account of a verdict: the deciding layer and the offending spans' labels."""
    labels: dict[str, int] = {}
    for finding in verdict.findings:
        labels[finding.label] = labels.get(finding.label, 0) + 1
    found = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in labels.items())
    return "; ".join(part for part in (verdict.layer, found) if part)


class _DetectorMetric(BaseMetric):
    """A check scored by one detector's verdict on the answer; passes while the score is under the threshold."""

    detector: Detector
    factory: DetectorFactory

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        super().__init__(check, env)
        if check.threshold is not None and not 0 <= check.threshold <= 1:
            raise MetricError(f"{check.label}: threshold must be within 0..1, not {check.threshold}")

    def _build(self, name: str, params: Mapping[str, Any]) -> None:
        self.detector, self.factory = build_detector(self.check.label, name, params, self.env)

    def needs(self, case: Case, item: GuardText) -> None:
        """Raise a MetricError when the case lacks what the detector compares the answer with."""

    async def score(self, case: Case, output: Output) -> Score:
        item = guard_text(case, output)
        self.needs(case, item)
        verdict = await self.detector.detect(item)
        limit = self.check.threshold if self.check.threshold is not None else self.factory.default_threshold
        passed = verdict.score < limit
        reason = describe(verdict) if verdict.score > 0 else ""
        if not passed:
            reason = f"{verdict.score:.2f} ≥ {limit:g}: {reason}".rstrip(": ")
        return Score(float(verdict.score), passed, reason)


class GuardMetric(_DetectorMetric):
    """``guard:<detector>``: a subclass per detector names it in ``detector_name``."""

    detector_name: ClassVar[str]
    harm: ClassVar[str] = ""

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        super().__init__(check, env)
        value = check.value
        if value is not None and not isinstance(value, Mapping):
            raise MetricError(
                f"{check.label}: `value` holds the {self.detector_name} detector's parameters (a mapping), "
                f"not {type(value).__name__}"
            )
        self._build(self.detector_name, value or {})


class AnyGuardMetric(_DetectorMetric):
    name = "guard"
    description = (
        "Any registered guard detector, named in `value: {detector: NAME, ...its parameters}`, scoring the "
        "answer. Measures a harm. Passes when the verdict score stays below the threshold (default: the "
        "detector's own), i.e. passed = no harm found."
    )

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        super().__init__(check, env)
        value = check.value
        if not isinstance(value, Mapping) or not isinstance(value.get("detector"), str):
            raise MetricError(f"{check.label}: give `value: {{detector: NAME, ...parameters}}`")
        self._build(value["detector"], {k: v for k, v in value.items() if k != "detector"})


class _NeedsSystem(GuardMetric):
    def needs(self, case: Case, item: GuardText) -> None:
        if not item.system:
            raise MetricError(
                f"{self.check.label} compares the answer with the system prompt, and case {case.id} "
                f"({case.where}) has no system message"
            )


class _NeedsContext(GuardMetric):
    def needs(self, case: Case, item: GuardText) -> None:
        if not (case.context or "").strip():
            raise MetricError(
                f"{self.check.label} checks the answer against `context`, and case {case.id} ({case.where}) "
                "has none"
            )


PASSES = (
    "Measures a harm: the value is the detector's score (0..1). Passes when it stays below the threshold "
    "(default: the detector's default threshold), i.e. passed = no harm found. `value` may hold the "
    "detector's parameters, as in a guard policy."
)
# (detector, what it finds in an answer, the class that checks the case has what the detector needs)
HARMS: tuple[tuple[str, str, type[GuardMetric]], ...] = (
    ("toxicity", "Toxic, harassing or self-harm content in the answer (trained classifier).", GuardMetric),
    ("pii", "Personal data leaked in the answer (Presidio entities).", GuardMetric),
    ("secrets", "Credentials and secrets in the answer (detect-secrets shapes, entropy).", GuardMetric),
    ("refusal", "The answer refuses (refusal phrasing).", GuardMetric),
    ("leakage", "The answer repeats the case's system prompt (its system message).", _NeedsSystem),
    ("grounding", "Claims in the answer that the case's `context` does not support.", _NeedsContext),
    ("injection", "Prompt-injection text in the answer (passed on to a next step).", GuardMetric),
    ("urls", "Links in the answer to domains outside the allow-list.", GuardMetric),
    ("banned_topics", "The answer talks about a banned topic (`value: {topics: ...}`).", GuardMetric),
    ("language", "The answer is in a language outside `value: {allowed: [...]}`.", GuardMetric),
    ("regex", "The answer matches a guard pattern (`value: {patterns: [...]}`).", GuardMetric),
)


def _metric(detector: str, harm: str, base: type[GuardMetric]) -> type[GuardMetric]:
    cls = type(
        f"Guard_{detector}",
        (base,),
        {
            "name": PREFIX + detector,
            "detector_name": detector,
            "harm": harm,
            "description": f"{harm} {PASSES}",
            "__module__": __name__,
        },
    )
    return cls


GUARD_METRICS: tuple[type[_DetectorMetric], ...] = (
    *(_metric(d, h, b) for d, h, b in HARMS),
    AnyGuardMetric,
)
