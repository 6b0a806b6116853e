"""The model registry: named models with immutable, numbered versions, aliases, lineage and metrics.

Each version is a content-addressed artifact, a file or a directory (see ``artifacts``), plus where it came from (``source``), what it
was made from (``lineage``: base model, datasets, prompt versions, a training run — free-form keys) and how it
scored (``metrics``). Aliases (``production``, ``staging``…) are the registry's labels: moved (promoted) and rolled back, audited.

A model setting's ``model_path`` may name a registered version with an MLflow-style URI: ``models:/NAME/3``,
``models:/NAME@production`` or ``models:/NAME`` (the latest version); it is resolved when the gateway starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmdock.errors import NotFound
from llmdock.registry import artifacts
from llmdock.registry.labels import LATEST, Versioned, check_name
from llmdock.store.audit import Actor
from llmdock.store.engine import Store
from llmdock.store.models import ModelVersion

URI_PREFIX = "models:/"


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{URI_PREFIX}{self.name}/{self.version}"
        return f"{URI_PREFIX}{self.name}@{self.alias or LATEST}"


def parse_uri(uri: str) -> ModelRef:
    """``models:/NAME/3``, ``models:/NAME@alias`` or ``models:/NAME``."""
    rest = uri.removeprefix(URI_PREFIX)
    if "@" in rest:
        name, _, alias = rest.rpartition("@")
        return ModelRef(check_name(name, "model"), alias=alias)
    name, _, tail = rest.rpartition("/")
    if name and tail.isdigit():
        return ModelRef(check_name(name, "model"), version=int(tail))
    return ModelRef(check_name(rest, "model"), alias=LATEST)


class ModelRegistry(Versioned[ModelVersion]):
    kind = "model"
    row_type = ModelVersion
    labels_key = "aliases"
    view_fields = tuple(
        "name version artifact filename size format source lineage metrics description aliases created_by "
        "created_at".split()
    )

    def __init__(self, store: Store, home: Path) -> None:
        super().__init__(store)
        self.home = Path(home).expanduser()

    def register(
        self,
        name: str,
        path: Path,
        actor: Actor,
        *,
        fmt: str = "",
        lineage: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        description: str = "",
        progress: bool = True,
    ) -> ModelVersion:
        """Store the file (or directory: an adapter, a tokenizer…) as an artifact and record it as the next
        version of ``name``."""
        check_name(name, "model")
        path = Path(path).expanduser()
        sha, size = artifacts.put(self.home, path, progress=progress)
        fmt = fmt or ("directory" if path.is_dir() else path.suffix.lstrip(".").lower() or "file")

        fields = {
            "artifact": sha,
            "filename": path.name,
            "size": size,
            "format": fmt,
            "source": str(path.resolve()),
            "lineage": lineage or {},
            "metrics": metrics or {},
            "description": description,
        }
        audited = ("artifact", "size", "format", "source", "lineage", "metrics")
        return self._add_next(name, actor, fields, audited)

    def get(self, ref: ModelRef) -> ModelVersion:
        version = ref.version
        if version is None:
            version = self.labels.get(ref.name, ref.alias or LATEST)
            if version is None:
                self.versions(ref.name)  # NotFound when the model itself is unknown
                raise NotFound(f"model {ref.name!r} has no alias {ref.alias!r}", param="alias")
        return self._row(ref.name, version)

    def path_of(self, row: ModelVersion) -> Path:
        path = artifacts.artifact_path(self.home, row.artifact)
        if not path.exists():
            raise NotFound(
                f"the artifact of {row.name}/{row.version} ({row.artifact[:12]}…) is missing from {path.parent}",
                param="artifact",
            )
        return path

    def with_lineage(self, **match: Any) -> list[ModelVersion]:
        """Every version whose lineage has each of these keys with this value (``dataset_version=…``,
        ``training_run=…``); a dotted key reaches into a mapping (``hyperparameters.training.max_steps``)."""
        found = []
        for name, _count, _latest in self.names():
            for row in self.versions(name):
                if all(_lookup(row.lineage, key) == value for key, value in match.items()):
                    found.append(row)
        return found

    def resolve(self, uri: str) -> tuple[Path, ModelVersion]:
        row = self.get(parse_uri(uri))
        return self.path_of(row), row


def _lookup(lineage: dict[str, Any], dotted: str) -> Any:
    value: Any = lineage
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value
