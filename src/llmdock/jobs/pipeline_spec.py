"""A pipeline YAML, read and checked before anything runs: every error is ``file:line: field: message``.

    name: nightly
    params: {model: smollm2}
    steps:
      - id: score
        uses: batch.run
        with: {input: in.jsonl, output: out.jsonl, model: "${params.model}"}
      - id: count
        uses: shell
        with: {run: "wc -l ${steps.score.outputs.output}"}

Checked: the shape; ids unique; ``uses`` a registered step; each ``with`` against the step's ``Params``;
``${params.x}`` a declared parameter; ``${steps.s.outputs.o}`` (or ``${steps.s.o}``) a step *before* this one
(steps run in file order, so a cycle or a forward reference is refused) that declares output ``o``; ``if:``
one reference, optionally negated (``!${steps.gate.passed}``); a ``schedule:`` block's cron and time zone;
``executor:`` (``local``, ``ray`` or ``{kind, address, workers}``: where ``batch.run`` and ``eval.*`` compute).

Per step: ``retries`` (extra attempts after a failure, waiting ``backoff_s`` times 2^n between them, with tenacity),
``timeout_s`` (per attempt; a shell step's process is killed), ``cache`` (reuse a previous run's outputs when
the resolved inputs, the input files' contents and the step's code version are the same; default: the
pipeline's ``cache``, itself false).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from llmdock.config.yaml_source import YamlDocument, config_error_from_pydantic, where_in
from llmdock.errors import ConfigError
from llmdock.jobs.executor import LOCAL, ExecutorSpec
from llmdock.jobs.schedule_spec import ScheduleSpec
from llmdock.jobs.steps import StepFactory

REF = re.compile(r"\$\{([^}]*)\}")
STEP_REF = re.compile(r"steps\.([A-Za-z0-9_-]+)\.(?:outputs\.)?([A-Za-z0-9_]+)")
CONDITION = re.compile(r"\s*(!|not\s+)?\$\{([^}]*)\}\s*")
PARAM_REF = re.compile(r"params\.([A-Za-z0-9_]+)")
Scalar = str | int | float | bool


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    uses: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    if_: str | None = Field(default=None, alias="if")
    retries: int = Field(default=0, ge=0, le=20)
    backoff_s: float = Field(default=1.0, ge=0)
    timeout_s: float | None = Field(default=None, gt=0)
    cache: bool | None = None


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    params: dict[str, Scalar] = Field(default_factory=dict)
    cache: bool = False
    schedule: ScheduleSpec | None = None
    executor: ExecutorSpec = LOCAL
    steps: list[StepSpec] = Field(min_length=1)


@dataclass
class Pipeline:
    path: Path
    name: str
    params: dict[str, Scalar]
    steps: list[StepSpec]
    cache: bool = False
    schedule: ScheduleSpec | None = None
    executor: ExecutorSpec = LOCAL


def refs_in(value: Any) -> list[str]:
    """Every ``${...}`` expression in a ``with`` value (nested lists and mappings too)."""
    if isinstance(value, str):
        return REF.findall(value)
    if isinstance(value, dict):
        return [r for v in value.values() for r in refs_in(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs_in(v)]
    return []


def load_pipeline(path: Path, steps: dict[str, StepFactory], given: dict[str, Any]) -> Pipeline:
    """Read and check ``path`` with ``--param`` values ``given``; ConfigError ``file:line: field`` otherwise."""
    doc = YamlDocument(path)
    try:
        spec = PipelineSpec.model_validate(doc.data)
    except PydanticValidationError as exc:
        raise config_error_from_pydantic(exc, doc) from None

    def where(loc: tuple[str | int, ...]) -> str:
        return where_in(loc, doc, {})

    unknown = sorted(set(given) - set(spec.params))
    if unknown:
        raise ConfigError(
            f"--param {unknown[0]}: not a parameter of {path} ({', '.join(spec.params) or 'none'})"
        )
    seen: dict[str, tuple[str, ...]] = {}
    later = {step.id for step in spec.steps}
    for i, step in enumerate(spec.steps):
        if step.id in seen:
            raise ConfigError(f"step id {step.id!r} is used twice", where=where(("steps", i, "id")))
        factory = steps.get(step.uses)
        if factory is None:
            raise ConfigError(
                f"unknown step {step.uses!r} (known: {', '.join(sorted(steps))})",
                where=where(("steps", i, "uses")),
            )
        for key, value in step.with_.items():
            for ref in refs_in(value):
                _check_ref(ref, spec.params, seen, later, where(("steps", i, "with", key)))
        if step.if_ is not None:
            _check_condition(step.if_, spec.params, seen, later, where(("steps", i, "if")))
        _check_params(factory, step, where, i)
        seen[step.id] = factory.outputs
    params = {**spec.params, **given}
    return Pipeline(
        path, spec.name or path.stem, params, spec.steps, spec.cache, spec.schedule, spec.executor
    )


def _check_condition(
    text: str, params: dict[str, Scalar], seen: dict[str, tuple[str, ...]], later: set[str], where: str
) -> None:
    m = CONDITION.fullmatch(text)
    if m is None:
        raise ConfigError(
            f"{text!r}: a condition is one reference, e.g. ${{steps.gate.passed}} or !${{params.skip}}",
            where=where,
        )
    _check_ref(m.group(2), params, seen, later, where)


def _check_ref(
    ref: str, params: dict[str, Scalar], seen: dict[str, tuple[str, ...]], later: set[str], where: str
) -> None:
    if m := PARAM_REF.fullmatch(ref):
        if m.group(1) not in params:
            raise ConfigError(f"${{{ref}}}: no parameter {m.group(1)!r} in params", where=where)
        return
    m = STEP_REF.fullmatch(ref)
    if m is None:
        raise ConfigError(
            f"${{{ref}}}: a reference is ${{params.NAME}} or ${{steps.ID.outputs.NAME}}", where=where
        )
    step, output = m.groups()
    if step not in seen:
        why = (
            "it runs after this one (steps run in file order: a reference to a later step, or a cycle, "
            "cannot be run)"
            if step in later
            else "there is no such step"
        )
        raise ConfigError(f"${{{ref}}}: no step {step!r} runs before this one: {why}", where=where)
    if output not in seen[step]:
        raise ConfigError(
            f"${{{ref}}}: step {step!r} has no output {output!r} (it has {', '.join(seen[step])})",
            where=where,
        )


def _check_params(factory: StepFactory, step: StepSpec, where: Any, i: int) -> None:
    """The ``with`` block against the step's Params; a field holding a reference is checked when it runs."""
    try:
        factory.Params.model_validate(step.with_)
    except PydanticValidationError as exc:
        for err in exc.errors():
            key = err["loc"][0] if err["loc"] else None
            if key is not None and refs_in(step.with_.get(str(key))):
                continue
            raise ConfigError(err["msg"], where=where(("steps", i, "with", *err["loc"]))) from None


def resolve(value: Any, params: dict[str, Scalar], outputs: dict[str, dict[str, Any]]) -> Any:
    """``value`` with its references replaced: a value that is one reference takes the referenced value as
    is (a number stays a number); references inside a longer string are formatted into it."""
    if isinstance(value, dict):
        return {k: resolve(v, params, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, params, outputs) for v in value]
    if not isinstance(value, str):
        return value

    def lookup(ref: str) -> Any:
        if m := PARAM_REF.fullmatch(ref):
            return params[m.group(1)]
        step, output = STEP_REF.fullmatch(ref).groups()  # type: ignore[union-attr]
        return outputs[step][output]

    whole = REF.fullmatch(value)
    if whole:
        return lookup(whole.group(1))
    return REF.sub(lambda m: str(lookup(m.group(1))), value)


def condition_holds(text: str, params: dict[str, Scalar], outputs: dict[str, dict[str, Any]]) -> bool:
    """The value of a checked ``if:``: the reference's value, truthy, negated by a leading ``!``/``not``.
    The strings "false", "0", "no" and "" are false (a --param is a string)."""
    m = CONDITION.fullmatch(text)
    assert m is not None  # checked by load_pipeline
    value = resolve("${" + m.group(2) + "}", params, outputs)
    truth = value.strip().lower() not in ("", "0", "false", "no") if isinstance(value, str) else bool(value)
    return truth != bool(m.group(1))


def step_refs(step: StepSpec) -> set[str]:
    """The steps whose outputs this one uses (in ``with`` or ``if``)."""
    texts = [*refs_in(step.with_), *refs_in(step.if_ or "")]
    return {m.group(1) for t in texts if (m := STEP_REF.fullmatch(t))}
