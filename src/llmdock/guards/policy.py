"""Guard policies: which detectors run for a request, with which action, threshold and failure mode.

The ``guards`` settings (or the YAML file named by ``guards.policy_file``) list detectors by name for each
direction, each with its policy fields and the detector's own parameters::

    input:
      injection: {action: block, threshold: 0.6}
      secrets: {action: redact}
    output:
      leakage: {action: block, canary: true}
    policies:
      - match: {model: smollm2, route: chat}
        input: {injection: {action: flag}, toxicity: null}   # null switches a detector off

Everything is validated when the runtime starts: an unknown detector, a detector in the wrong direction,
a threshold outside 0..1 or a bad parameter stops llmdock with ``file:line: field``. Policy overrides
apply in order to the requests they match (model, route, prompt template, API key id or team with auth on,
or the bearer key itself with auth off); the result for each combination is computed once and cached.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from llmdock.config import GuardMatch, GuardSettings, Settings, load_yaml_file
from llmdock.errors import ConfigError, LlmdockError
from llmdock.guards.base import Detector, DetectorFactory, Direction

if TYPE_CHECKING:
    from llmdock.pipeline.context import RequestContext
    from llmdock.pipeline.env import StageEnv

Action = Literal["block", "redact", "flag", "log"]
Locator = Callable[[tuple[str | int, ...]], str]
ROUTES = {"/v1/chat/completions": "chat", "/v1/completions": "completion"}
POLICY_FIELDS = ("action", "threshold", "on_error", "timeout_ms", "roles")
DIRECTIONS: tuple[Direction, ...] = ("input", "output")


class EntryPolicy(BaseModel):
    """The policy fields every detector entry has (the rest of an entry are the detector's parameters)."""

    model_config = ConfigDict(extra="forbid")

    action: Action
    threshold: float = Field(ge=0, le=1)
    on_error: Literal["closed", "open"]
    timeout_ms: float = Field(gt=0)
    roles: list[Literal["system", "developer", "user", "assistant", "tool", "prompt", "answer"]]


@dataclass(slots=True)
class Entry:
    """One detector as a request will run it."""

    name: str
    detector: Detector
    policy: EntryPolicy
    params: dict[str, Any]


@dataclass(slots=True)
class DetectorEnv:
    """What detectors are built with: where trained classifiers live, and the stages' environment.

    ``stages`` is ``None`` where detectors run without a runtime (``llmdock guards check``); detectors that
    need a model (embedding similarity, an LLM judge) then skip that layer.
    """

    model_dir: Path
    stages: StageEnv | None = None


@dataclass
class GuardPolicies:
    """Validated policies for both directions, and the per-request resolution (cached)."""

    base: dict[Direction, dict[str, Entry]]
    overrides: list[tuple[GuardMatch, set[str], dict[Direction, dict[str, Entry | None]]]]
    settings: GuardSettings
    _cache: dict[tuple[str, ...], dict[Direction, list[Entry]]] = field(
        default_factory=dict
    )  # per request kind

    def resolve(self, ctx: RequestContext) -> dict[Direction, list[Entry]]:
        template = str(ctx.attributes.get("llmdock.prompt_template", ""))
        key = (ctx.model, ctx.operation, template, ctx.namespace, ctx.api_key_id, ctx.team_id)
        found = self._cache.get(key)
        if found is None:
            merged: dict[Direction, dict[str, Entry]] = {d: dict(e) for d, e in self.base.items()}
            for match, keys, entries in self.overrides:
                if _matches(match, keys, key):
                    for direction, changes in entries.items():
                        for name, entry in changes.items():
                            if entry is None:
                                merged[direction].pop(name, None)
                            else:
                                merged[direction][name] = entry
            found = {d: list(e.values()) for d, e in merged.items()}
            if len(self._cache) < 10_000:
                self._cache[key] = found
        return found


def api_key_namespace(key: str) -> str:
    """The tenant namespace the gateway derives from ``Authorization: Bearer <key>`` when auth is off."""
    return hashlib.sha256(f"Bearer {key}".encode()).hexdigest()[:16]


def _matches(match: GuardMatch, keys: set[str], request: tuple[str, ...]) -> bool:
    model, route, template, namespace, key_id, team = request
    return (
        (not match.model or model in match.model)
        and (not match.route or route in match.route)
        and (not match.prompt_template or template in match.prompt_template)
        and (not match.api_key_id or key_id in match.api_key_id)
        and (not match.team or team in match.team)
        and (not keys or namespace in keys)
    )


def build_policies(
    settings: Settings, detectors: Mapping[str, DetectorFactory], env: DetectorEnv
) -> GuardPolicies:
    """Validate the guard settings against the registered detectors and build every detector once."""
    guards = settings.guards
    locate: Locator = lambda loc: settings.where(("guards", *loc))  # noqa: E731
    if guards.policy_file is not None:
        data, locate = load_yaml_file(guards.policy_file)
        try:
            guards = GuardSettings.model_validate({**data, "policy_file": None})
        except PydanticValidationError as exc:
            raise _error(exc, (), locate) from None
    builder = _Builder(detectors, env, locate, guards.timeout_ms)
    base: dict[Direction, dict[str, Entry]] = {}
    for direction in DIRECTIONS:
        entries = getattr(guards, direction)
        base[direction] = {
            name: builder.entry(direction, name, spec or {}, None, (direction, name))
            for name, spec in entries.items()
            if spec is not None
        }
    overrides = []
    for i, override in enumerate(guards.policies):
        keys = set()
        for j, var in enumerate(override.match.api_key_env):
            value = os.environ.get(var)
            if not value:
                raise ConfigError(
                    f"{var} is not set", where=locate(("policies", i, "match", "api_key_env", j))
                )
            keys.add(api_key_namespace(value))
        routes = [ROUTES.get(r, r) for r in override.match.route]
        for j, route in enumerate(routes):
            if route not in ("chat", "completion"):
                raise ConfigError(
                    f"unknown route {route!r} (chat, completion or their /v1 paths)",
                    where=locate(("policies", i, "match", "route", j)),
                )
        match = override.match.model_copy(update={"route": routes})
        changes: dict[Direction, dict[str, Entry | None]] = {}
        for direction in DIRECTIONS:
            changes[direction] = {}
            for name, spec in getattr(override, direction).items():
                base_entry = base[direction].get(name)
                loc = ("policies", i, direction, name)
                changes[direction][name] = (
                    None if spec is None else builder.entry(direction, name, spec, base_entry, loc)
                )
        overrides.append((match, keys, changes))
    return GuardPolicies(base, overrides, guards)


class _Builder:
    def __init__(
        self, detectors: Mapping[str, DetectorFactory], env: DetectorEnv, locate: Locator, timeout_ms: float
    ) -> None:
        self.detectors = detectors
        self.timeout_ms = timeout_ms
        self.env = env
        self.locate = locate
        self._built: dict[tuple[str, str], Detector] = {}

    def entry(
        self,
        direction: Direction,
        name: str,
        spec: dict[str, Any],
        base: Entry | None,
        loc: tuple[str | int, ...],
    ) -> Entry:
        factory = self.detectors.get(name)
        if factory is None:
            known = ", ".join(sorted(n for n, f in self.detectors.items() if direction in f.directions))
            raise ConfigError(
                f"unknown detector {name!r} (known for {direction}: {known})", where=self.locate(loc)
            )
        if direction not in factory.directions:
            raise ConfigError(f"detector {name!r} does not check {direction}", where=self.locate(loc))
        if not isinstance(spec, dict):
            raise ConfigError(
                "give a mapping of policy fields and parameters, or null", where=self.locate(loc)
            )
        defaults: dict[str, Any] = (
            base.policy.model_dump()
            if base is not None
            else {
                "action": factory.default_action,
                "threshold": factory.default_threshold,
                "on_error": factory.default_on_error,
                "timeout_ms": self.timeout_ms,
                "roles": list(factory.default_roles),
            }
        )
        policy_part = {k: v for k, v in spec.items() if k in POLICY_FIELDS}
        params = {
            **(base.params if base is not None else {}),
            **{k: v for k, v in spec.items() if k not in POLICY_FIELDS},
        }
        try:
            policy = EntryPolicy.model_validate({**defaults, **policy_part})
            validated = factory.Params.model_validate(params)
        except PydanticValidationError as exc:
            raise _error(exc, loc, self.locate) from None
        key = (name, validated.model_dump_json())
        detector = self._built.get(key)
        if detector is None:
            try:
                detector = self._built[key] = factory(validated, self.env)
            except LlmdockError as exc:  # e.g. a model or package the detector needs is missing
                raise ConfigError(exc.message, where=self.locate(loc)) from None
            except ValueError as exc:  # a parameter only the detector itself can check (an entity name …)
                raise ConfigError(str(exc), where=self.locate(loc)) from None
        return Entry(name, detector, policy, params)


def _error(exc: PydanticValidationError, prefix: tuple[str | int, ...], locate: Locator) -> ConfigError:
    first = exc.errors()[0]
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return ConfigError(first["msg"] + more, where=locate((*prefix, *first["loc"])))
