"""The detector contract: what a guard detector is given, and the verdict it returns.

A detector looks at one text (a prompt message, a tool result, an answer) and says how sure it is that the
text is a problem (``score`` in 0..1), which layer of it decided (``layer``: ``heuristic:ignore-previous``,
``classifier``, ``normalize:base64`` …) and which parts of the text offend (``findings``, character offsets
into the text it was given). It never decides what happens: the policy compares the score with its
threshold and applies the action (block, redact, flag, log). Detectors register through the
``llmdock_detectors`` hook, the same way the built-ins do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from llmdock.guards.features import Ngrams
from llmdock.guards.normalize import Normalized, normalize

if TYPE_CHECKING:
    from llmdock.pipeline.context import RequestContext

Direction = Literal["input", "output"]


@dataclass(slots=True)
class Finding:
    """One offending span: ``text[start:end]`` of the text the detector was given."""

    start: int
    end: int
    label: str
    score: float = 1.0


@dataclass(slots=True)
class Verdict:
    score: float
    layer: str = ""
    findings: list[Finding] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


CLEAN = Verdict(0.0)


@dataclass(slots=True)
class GuardText:
    """One text to check, with what a detector may need around it.

    ``role`` is the chat role (``user``, ``tool``, ``system``…, ``prompt`` for completions, ``answer`` for
    output). ``system`` is the request's system prompt (leakage checks) and ``context`` the text the
    answer should be grounded in (system, tool and user messages).
    """

    text: str
    role: str
    direction: Direction
    system: str = ""
    context: str = ""
    canary: str = ""
    ctx: RequestContext | None = None
    _normalized: Normalized | None = field(default=None, init=False, repr=False, compare=False)
    _ngrams: Ngrams | None = field(default=None, init=False, repr=False, compare=False)

    def normalized(self) -> Normalized:
        """``normalize(text)``, computed once and shared by the detectors that classify the text."""
        if self._normalized is None:
            self._normalized = normalize(self.text)
        return self._normalized

    def ngrams(self) -> Ngrams:
        """The normalised text's hashed n-grams, shared by the classifiers (injection, toxicity)."""
        if self._ngrams is None:
            self._ngrams = Ngrams(self.normalized().text)
        return self._ngrams


class DetectorParams(BaseModel):
    """Base of a detector's own settings (beside the policy fields action, threshold, on_error…)."""

    model_config = ConfigDict(extra="forbid")


class Detector(Protocol):
    """A built detector: ``detect`` may be a plain computation (most are: microseconds to a millisecond)
    or, when ``awaits`` is true, await a model (embedding similarity, LLM judge); the stage bounds the
    second kind with the policy's timeout and checks the first kind's time after it returns."""

    awaits: bool

    async def detect(self, item: GuardText) -> Verdict: ...


class BaseDetector:
    """Defaults shared by the built-in detectors. A subclass names itself and what differs in its header::

        class LeakageDetector(BaseDetector, name="leakage", directions={"output"}, Params=LeakageParams,
                              action="flag"): ...

    (class attributes of the same names work too), and provides ``__init__(params, env)`` and ``detect``.
    """

    name: ClassVar[str]
    directions: ClassVar[frozenset[Direction]]
    Params: ClassVar[type[DetectorParams]] = DetectorParams
    default_threshold: ClassVar[float] = 0.5
    default_action: ClassVar[str] = "flag"
    default_on_error: ClassVar[str] = "open"
    default_roles: ClassVar[tuple[str, ...]] = ("user", "tool", "prompt", "answer")
    awaits = False

    def __init_subclass__(
        cls,
        *,
        name: str | None = None,
        directions: Iterable[Direction] | None = None,
        Params: type[DetectorParams] | None = None,
        action: str | None = None,
        on_error: str | None = None,
        roles: tuple[str, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None:
            cls.name = name
        if directions is not None:
            cls.directions = frozenset(directions)
        if Params is not None:
            cls.Params = Params
        if action is not None:
            cls.default_action = action
        if on_error is not None:
            cls.default_on_error = on_error
        if roles is not None:
            cls.default_roles = roles


class DetectorFactory(Protocol):
    """What the ``llmdock_detectors`` hook returns: a class built from its validated params and the env.

    ``name`` is how policies refer to it, ``directions`` where it may be used; the ``default_*`` values
    apply unless a policy entry sets them.
    """

    # (plain attributes: a protocol matched by a class object cannot declare ClassVar members)
    name: str
    directions: frozenset[Direction]
    Params: type[DetectorParams]
    default_threshold: float
    default_action: str
    default_on_error: str
    default_roles: tuple[str, ...]

    def __call__(self, params: Any, env: Any) -> Detector: ...
