"""Running cleaning steps over a version and saving the result as a new version with its lineage.

Steps come from a recipe file (``steps:`` a list of ``name`` or ``name: {params}``) or from command-line
specs (``"length max_tokens=512"``, ``"kanon columns=age,zip k=3"``). Parameters are validated by each step's
model before any row is touched; a mistake is named ``file:line: steps.2.length.max_tokens`` (or ``--step 2``).
Each step is recorded in the new version's lineage with its parameters, the rows it read and kept, what it
dropped by reason (the first few in full) and its own figures (k before and after, split sizes…).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, get_origin

import yaml
from pydantic import ValidationError as PydanticValidationError

from llmdock.config import Settings
from llmdock.config.yaml_source import load_yaml_file
from llmdock.datasets.importing import Report, progress
from llmdock.datasets.rows import Row
from llmdock.datasets.steps.base import Step, StepContext
from llmdock.datasets.versions import Datasets
from llmdock.errors import ConfigError, InvalidRequest, NotFound
from llmdock.store.audit import Actor
from llmdock.store.dataset_rows import DatasetVersion

Where = Callable[[tuple[str | int, ...]], str]
StepSpec = tuple[str, dict[str, Any], Where]
ERRORS_KEPT = 5


def _build(spec: StepSpec, known: Mapping[str, type[Step]]) -> Step:
    name, params, where = spec
    cls = known.get(name)
    if cls is None:
        raise ConfigError(f"unknown step {name!r}: one of {', '.join(sorted(known))}", where=where(()))
    try:
        return cls(cls.Params.model_validate(params))
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(first["msg"], where=where(tuple(first["loc"]))) from None


def _flag_where(i: int) -> Where:
    return lambda loc: f"--step {i}: {'.'.join(map(str, loc))}"


def _where_in(where: Where, prefix: tuple[str | int, ...]) -> Where:
    return lambda field: where(prefix + field)


def recipe_specs(path: Path) -> list[StepSpec]:
    """The steps of a recipe file, each with where its parameters are (for errors)."""
    data, where = load_yaml_file(path)
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ConfigError("a recipe is a mapping with `steps:`, a list of steps", where=where(("steps",)))
    specs: list[StepSpec] = []
    for i, item in enumerate(steps):
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError("a step is `name` or `name: {parameters}`", where=where(("steps", i)))
        [(name, params)] = item.items()
        loc: tuple[str | int, ...] = ("steps", i, name)
        specs.append((name, params or {}, _where_in(where, loc)))
    return specs


def cli_specs(texts: list[str], known: Mapping[str, type[Step]]) -> list[StepSpec]:
    """``--step "NAME key=value 'key=a value with spaces'"``; a list parameter takes comma-separated values."""
    specs: list[StepSpec] = []
    for i, text in enumerate(texts, 1):
        name, *pairs = shlex.split(text)
        fields = known[name].Params.model_fields if name in known else {}
        params: dict[str, Any] = {}
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq:
                raise InvalidRequest(f"{pair!r} is not key=value", where=f"--step {i}")
            is_list = key in fields and get_origin(fields[key].annotation) is list
            params[key] = [_scalar(v) for v in value.split(",")] if is_list else _scalar(value)
        specs.append((name, params, _where_in(_flag_where(i), (name,))))
    return specs


def _scalar(text: str) -> Any:
    """A number, boolean or null as YAML reads it; anything else the text itself."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if isinstance(value, dict | list) or (value is None and text not in ("null", "~")) else value


def model_file(settings: Settings, name: str) -> Path:
    """The model file of a configured model (the one a length filter counts tokens for)."""
    from llmdock.backends.model_files import resolve_model_path

    model = settings.all_models().get(name)
    if model is None:
        raise NotFound(f"no model {name!r} is configured (llmdock models list)", param="model")
    for deployment, loc in model.deployment_configs():
        spec = deployment.model_dump().get("model_path")
        if spec:
            return resolve_model_path(
                spec, settings, where=settings.where(("models", name, *loc, "model_path"))
            )
    raise InvalidRequest(f"model {name!r} has no model file to read a tokenizer from", param="model")


def context(settings: Settings) -> StepContext:
    from llmdock.privacy.privacy_policy import load_pseudonym_key

    return StepContext(
        home=settings.home,
        model_path=lambda name: model_file(settings, name),
        pseudonym_key=lambda: load_pseudonym_key(settings),
        default_model=settings.default_model,
    )


def run_steps(
    rows: list[Row], steps: list[Step], base: StepContext
) -> tuple[list[Row], list[dict[str, Any]]]:
    records = []
    for step in steps:
        ctx = replace(base, report=Report(read=len(rows)), extra={})
        with progress(f"{step.name}") as bar:
            task = bar.add_task(step.name, total=len(rows))
            ctx.advance = lambda n, task=task: bar.advance(task, n)  # type: ignore[misc]
            rows = step.run(rows, ctx)
        ctx.report.kept = len(rows)
        report = ctx.report.as_dict()
        report["errors"] = report["errors"][:ERRORS_KEPT]
        records.append(
            {"step": step.name, "params": step.params.model_dump(), **report, "figures": ctx.extra}
        )
    return rows, records


def clean(
    datasets: Datasets,
    ref: str,
    specs: list[StepSpec],
    known: Mapping[str, type[Step]],
    base: StepContext,
    actor: Actor,
    *,
    save_as: str = "",
) -> tuple[DatasetVersion, bool, list[dict[str, Any]]]:
    """Apply the steps to version ``ref`` and save the rows as the next version of ``save_as`` (default: the
    same dataset); returns the version, whether it is new, and each step's record."""
    steps = [_build(spec, known) for spec in specs]  # every mistake found before any work
    parent = datasets.get(ref)
    rows, records = run_steps(list(datasets.rows(parent)), steps, base)
    dropped = {f"{r['step']}: {reason}": n for r in records for reason, n in r["dropped"].items()}
    report = {"read": parent.rows, "kept": len(rows), "dropped": dropped, "errors": []}
    lineage = {
        "sources": parent.lineage.get("sources", []),
        "parent": f"{parent.name}/{parent.version}",
        "steps": [*parent.lineage.get("steps", []), *records],
    }
    version, new = datasets.save(
        save_as or parent.name, rows, actor, lineage=lineage, report=report, parent=parent.digest
    )
    return version, new, records
