"""What an evaluation is made of: a case, a target's output for it, a check, and the score a metric gives.

These are the evaluation package's shared vocabulary; metrics, the runner, the store rows and the
statistics all speak it. A metric is a plugin (``llmdock_metrics`` hook): a class built once per check of a
suite from that check, that scores one case's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from llmdock.pipeline.env import StageEnv


@dataclass(frozen=True, slots=True)
class Case:
    """One row of a suite's dataset."""

    id: str  # the row's ``id`` if it has one, else its line number: stable across runs of the same file
    input: str | None = None  # a user message (chat) or prompt text
    messages: list[dict[str, Any]] | None = None  # or a whole conversation
    expected: str | None = None  # the reference answer, for metrics that compare against one
    context: str | None = None  # retrieved or given context (grounding metrics)
    vars: dict[str, Any] = field(default_factory=dict)  # prompt-template variables
    metadata: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # ``file:line`` of the row, for messages


@dataclass(slots=True)
class Output:
    """What a target answered for a case (or why it did not)."""

    text: str = ""
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    trace_id: str = ""
    error: str = ""  # one line; empty when the target answered
    served: dict[str, Any] = field(default_factory=dict)  # model / deployment / prompt version actually used
    # The conversation the backend was asked (prompt template, system prompt, input guards applied); None
    # when it is not known here (a URL target whose server renders a prompt template). Not stored.
    messages: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class Score:
    """One check's verdict on one output: a value (0..1 for most metrics, ms or tokens for some) and pass/fail."""

    value: float
    passed: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Check:
    """One entry of a suite's ``assert`` list, as promptfoo users write it: ``{type, value, threshold, weight}``."""

    type: str
    value: Any = None  # what the metric compares with: a substring, a pattern, a JSON schema…
    threshold: float | None = (
        None  # pass when the score reaches it (or, for costs such as latency, stays under)
    )
    weight: float = 1.0
    name: str = ""  # how results and reports call it; defaults to the type (with the value when that tells)
    where: str = ""  # ``file:line: field`` of the check in the suite

    @property
    def label(self) -> str:
        return self.name or self.type


class MetricError(Exception):
    """Raised by a metric's constructor for a bad check (the suite loader turns it into a ConfigError at the
    check's ``file:line``), or by ``score`` for a case it cannot score (the runner names the case)."""


class Metric(Protocol):
    """A built metric: one per check of a suite."""

    async def score(self, case: Case, output: Output) -> Score: ...


class MetricFactory(Protocol):
    """What the ``llmdock_metrics`` hook returns: a class known by ``name``, built from a check and the env.

    ``needs_reference``: the metric compares with ``case.expected`` (a case without one is an error naming
    the case). ``needs_env``: it uses models (embeddings, a judge) through the env, which is ``None`` when the
    target is a remote URL evaluated without a local runtime.
    """

    name: str
    needs_reference: bool
    description: str

    def __call__(self, check: Check, env: StageEnv | None) -> Metric: ...


class BaseMetric:
    """Defaults for the built-in metrics; a subclass sets ``name`` (and the rest where it differs)."""

    name: ClassVar[str]
    needs_reference: ClassVar[bool] = False
    # Uses models through the env (``what_it_uses`` says which, for the error when a target has none).
    needs_env: ClassVar[bool] = False
    what_it_uses: ClassVar[str] = "models"
    description: ClassVar[str] = ""

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        if self.needs_env and env is None:
            raise MetricError(
                f"{check.label}: needs the local runtime's {self.what_it_uses}, and this target has none"
            )
        self.check = check
        self.env = env

    def passes(self, value: float, default_threshold: float = 1.0) -> bool:
        """The usual rule: pass when the value reaches the check's threshold (else ``default_threshold``)."""
        threshold = self.check.threshold if self.check.threshold is not None else default_threshold
        return value >= threshold

    def reference(self, case: Case) -> str:
        if case.expected is None:
            raise MetricError(
                f"{self.check.label} needs `expected` and case {case.id} ({case.where}) has none"
            )
        return case.expected


@dataclass(slots=True)
class CaseResult:
    """One case's run on one target (one repeat): the output, each check's score, and the verdict."""

    target: str
    case_id: str
    repeat: int
    output: Output
    scores: dict[str, Score]  # by check label
    score: float  # the weighted share of checks passed, 0..1
    passed: bool
    error: str = ""  # the target's or a metric's error; an errored case neither passes nor fails a metric
