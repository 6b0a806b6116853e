"""Suites: a YAML file naming a dataset, the targets to ask, and the checks each answer must pass.

```yaml
name: capitals
dataset: capitals.jsonl          # JSONL or CSV, relative to this file
targets:
  - model: smollm2               # the served pipeline, in process (cache off unless `cache: true`)
    params: {temperature: 0, max_tokens: 32}
  - model: smollm2
    prompt: support@production   # a stored prompt template (name@label or name/version)
  - url: http://127.0.0.1:8000/v1   # any OpenAI-compatible endpoint
    model: smollm2
assert:
  - {type: icontains}            # promptfoo's shape: type, value, threshold, weight
  - {type: rouge-l, threshold: 0.3, weight: 2}
repeats: 1
seed: 0
concurrency: 4
```

Every error names the suite's ``file:line: field`` (or the dataset's ``file:line: field``) and never shows a
traceback.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from llmdock.config import load_yaml_file
from llmdock.errors import ConfigError
from llmdock.evaluate.case import Case, Check

Where = Callable[[tuple[str | int, ...]], str]
SAMPLING = ("temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty")


class TargetSpec(BaseModel):
    """Whom a suite asks: the served pipeline in process (``model``, optionally ``prompt``), or ``url``."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    model: str | None = None
    prompt: str | None = None  # name@label or name/version
    url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    pipeline: list[str] | None = None  # stages to run instead of the settings' pipeline (e.g. guards off)
    cache: bool = False
    system: str | None = None  # a system prompt put before each case's messages
    params: dict[str, Any] = Field(default_factory=dict)  # temperature, top_p, max_tokens, stop…

    @model_validator(mode="after")
    def _needs_something_to_ask(self) -> TargetSpec:
        if self.model is None and self.prompt is None:
            raise ValueError("a target needs `model` (and/or `prompt`, or `url` + `model`)")
        if self.url is not None and self.model is None:
            raise ValueError("a `url` target needs `model` too")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"`url` is an http:// or https:// address, not {self.url!r}")
        unknown = sorted(set(self.params) - set(SAMPLING))
        if unknown:
            raise ValueError(f"unknown sampling parameter(s) {unknown} (known: {', '.join(SAMPLING)})")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        base = self.model or ""
        if self.prompt:
            base = f"{base}+{self.prompt}" if base else self.prompt
        return f"{base}@{self.url}" if self.url else base


class CheckSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    value: Any = None
    threshold: float | None = None
    weight: float = Field(default=1.0, ge=0)
    name: str = ""


class SuiteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""
    description: str = ""
    dataset: str
    targets: list[TargetSpec] = Field(min_length=1)
    assert_: list[CheckSpec] = Field(alias="assert", min_length=1)
    threshold: float | None = Field(default=None, ge=0, le=1)  # a case passes at this weighted share
    repeats: int = Field(default=1, ge=1, le=100)
    seed: int = 0
    concurrency: int = Field(default=4, ge=1, le=256)
    max_tokens: int = Field(default=128, ge=1)
    gate: dict[str, float] = Field(
        default_factory=dict
    )  # `llmdock eval gate` bounds: label -> minimum (maximum
    # for latency, tokens, cost), e.g. {"pass rate": 0.8, "rouge-l": 0.3}


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its spec, its checks with their places, its cases, and a hash of both files."""

    spec: SuiteSpec
    path: Path
    checks: list[Check]
    cases: list[Case]
    sha256: str
    skipped: list[str]  # dataset rows left out under --on-error skip, each ``file:line: field: message``

    @property
    def name(self) -> str:
        return self.spec.name or self.path.stem


def load_suite(path: Path, on_error: Literal["stop", "skip"] = "stop") -> Suite:
    """Read and check a suite file and its dataset. Raises ConfigError naming ``file:line: field``."""
    data, where = load_yaml_file(path)
    try:
        spec = SuiteSpec.model_validate(data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        loc = tuple("assert" if p == "assert_" else p for p in first["loc"])
        raise ConfigError(first["msg"], where=where(loc)) from None
    checks = [
        Check(c.type, c.value, c.threshold, c.weight, c.name, where=where(("assert", i)))
        for i, c in enumerate(spec.assert_)
    ]
    labels = [c.label for c in checks]
    for check in checks:
        if labels.count(check.label) > 1:
            raise ConfigError(f"two checks are called {check.label!r}: give one a `name`", where=check.where)
    dataset = (path.parent / spec.dataset).resolve()
    if not dataset.is_file():
        raise ConfigError(
            f"dataset {spec.dataset!r} not found (looked in {dataset})", where=where(("dataset",))
        )
    cases, skipped = load_cases(dataset, on_error)
    if not cases:
        raise ConfigError("the dataset has no cases", where=str(dataset))
    digest = hashlib.sha256(path.read_bytes() + b"\0" + dataset.read_bytes()).hexdigest()
    return Suite(spec, path, checks, cases, digest, skipped)


def load_cases(path: Path, on_error: Literal["stop", "skip"] = "stop") -> tuple[list[Case], list[str]]:
    """The cases of a JSONL or CSV dataset; a bad row stops with ``file:line: field: message`` or is skipped."""
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _jsonl_rows(path)
    cases: list[Case] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for line, row, problem in rows:
        where = f"{path}:{line}"
        try:
            if problem:
                raise ConfigError(problem, where=where)
            case = _case(row, line, where)
            if case.id in seen:
                raise ConfigError(f"id: {case.id!r} is used by an earlier row", where=where)
        except ConfigError as exc:
            if on_error == "stop":
                raise
            skipped.append(exc.one_line())
            continue
        seen.add(case.id)
        cases.append(case)
    return cases, skipped


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any], str]]:
    with path.open(encoding="utf-8") as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                yield line, {}, f"not JSON: {exc.msg} (column {exc.colno})"
                continue
            yield line, row, "" if isinstance(row, dict) else "a row must be a JSON object"


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any], str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            known = {k: v for k, v in row.items() if k in ("id", "input", "expected", "context")}
            known["vars"] = {k: v for k, v in row.items() if k not in known and k is not None}
            yield reader.line_num, known, ""


FIELDS = ("id", "input", "messages", "expected", "context", "vars", "metadata")


def _case(row: dict[str, Any], line: int, where: str) -> Case:
    for key in row:
        if key not in FIELDS:
            raise ConfigError(f"{key}: unknown field (known: {', '.join(FIELDS)})", where=where)
    text, messages = row.get("input"), row.get("messages")
    if (text is None) == (messages is None) and not row.get("vars"):
        raise ConfigError("input: give `input` (text) or `messages`, one of them", where=where)
    if text is not None and not isinstance(text, str):
        raise ConfigError("input: must be a string", where=where)
    if messages is not None and not (
        isinstance(messages, list) and all(isinstance(m, dict) and "role" in m for m in messages)
    ):
        raise ConfigError("messages: must be a list of {role, content} objects", where=where)
    for key in ("expected", "context"):
        if row.get(key) is not None and not isinstance(row[key], str):
            raise ConfigError(f"{key}: must be a string", where=where)
    for key in ("vars", "metadata"):
        if not isinstance(row.get(key) or {}, dict):
            raise ConfigError(f"{key}: must be an object", where=where)
    return Case(
        id=str(row.get("id") or line),
        input=text,
        messages=messages,
        expected=row.get("expected"),
        context=row.get("context"),
        vars=row.get("vars") or {},
        metadata=row.get("metadata") or {},
        where=where,
    )
