"""Dataset versions: rows as a content-addressed file (``registry.artifacts``), numbered per name, with lineage.

A version is saved in two steps: the rows file is written to a temporary name, flushed and renamed to its
sha256 under ``<home>/artifacts/``; only then is the version's row inserted. A kill at any point leaves either
no version or a complete one (at worst an unreferenced artifact, never a version pointing at a torn file).
Saving rows whose digest is already the latest version of that name returns that version: nothing changed.

A version is named ``NAME`` (the latest), ``NAME/3`` (by number) or ``NAME@1a2b3c`` (by a digest prefix).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from llmdock.datasets.formats import canonical_line, write_atomic
from llmdock.datasets.rows import Row
from llmdock.errors import Conflict, InvalidRequest, NotFound
from llmdock.registry import artifacts
from llmdock.registry.labels import NAME_RE
from llmdock.store import audit
from llmdock.store.audit import Actor
from llmdock.store.dataset_rows import DatasetVersion
from llmdock.store.engine import Store

_REF = re.compile(r"^(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<digest>[0-9a-f]{4,64}))?$")


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Datasets:
    """Named datasets and their versions, in the store and under the llmdock home."""

    def __init__(self, store: Store, home: Path) -> None:
        self.store = store
        self.home = Path(home).expanduser()

    def save(
        self,
        name: str,
        rows: Iterable[Row],
        actor: Actor,
        *,
        lineage: dict[str, Any],
        report: dict[str, Any],
        parent: str = "",
        description: str = "",
    ) -> tuple[DatasetVersion, bool]:
        """Store ``rows`` as the next version of ``name``; returns (version, whether it is new)."""
        if not NAME_RE.match(name):
            raise InvalidRequest(
                f"dataset name {name!r}: letters, digits and _ . : - only, starting with a letter or digit",
                param="name",
            )
        rows = list(rows)
        staging = self.home / "tmp"
        staging.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=staging) as tmp:
            path = Path(tmp) / "rows.jsonl"
            write_atomic(path, lambda out: out.writelines(canonical_line(r) for r in rows))
            digest, size = artifacts.put(self.home, path, progress=False)
        latest = self._latest(name)
        if latest is not None and latest.digest == digest:
            return latest, False
        fields = {"digest": digest, "rows": len(rows), "size": size, "parent": parent, "lineage": lineage}
        for _ in range(5):
            before = self._latest(name)
            number = before.version + 1 if before else 1
            row = DatasetVersion(name=name, version=number, report=report, description=description, **fields)
            row.created_by, row.created_at = actor.name, datetime.now(UTC)
            if self._insert(row):
                audit.record(self.store, "dataset.create", actor, target=f"{name}/{number}", after=fields)
                return row, True
        raise Conflict(f"could not number a new version of dataset {name!r}; try again", param="name")

    def _insert(self, row: DatasetVersion) -> bool:
        """False when another writer took this version number first."""
        try:
            with self.store.session() as s, s.begin():
                s.add(row)
        except IntegrityError:
            return False
        return True

    def _latest(self, name: str) -> DatasetVersion | None:
        with self.store.session() as s:
            return s.scalars(
                select(DatasetVersion)
                .where(DatasetVersion.name == name)
                .order_by(DatasetVersion.version.desc())
            ).first()

    def get(self, ref: str) -> DatasetVersion:
        """``NAME``, ``NAME/3`` or ``NAME@digest-prefix``."""
        m = _REF.match(ref)
        if m is None:
            raise NotFound(f"{ref!r} is not NAME, NAME/VERSION or NAME@DIGEST", param="dataset")
        name = m["name"]
        versions = self.versions(name)
        if m["version"]:
            found = [v for v in versions if v.version == int(m["version"])]
        elif m["digest"]:
            found = [v for v in versions if v.digest.startswith(m["digest"])][-1:]
        else:
            found = versions[-1:]
        if not found:
            raise NotFound(
                f"dataset {name!r} has no version {ref!r} (latest: {versions[-1].version})", param="dataset"
            )
        return found[0]

    def versions(self, name: str) -> list[DatasetVersion]:
        with self.store.session() as s:
            rows = list(
                s.scalars(
                    select(DatasetVersion).where(DatasetVersion.name == name).order_by(DatasetVersion.version)
                )
            )
        if not rows:
            raise NotFound(f"no dataset {name!r} (llmdock datasets list)", param="dataset")
        return rows

    def names(self) -> list[tuple[str, int, int, int]]:
        """(name, number of versions, latest version, rows in the latest) of every dataset."""
        with self.store.session() as s:
            latest = (
                select(
                    DatasetVersion.name, func.count().label("n"), func.max(DatasetVersion.version).label("v")
                )
                .group_by(DatasetVersion.name)
                .subquery()
            )
            rows = s.execute(
                select(latest.c.name, latest.c.n, latest.c.v, DatasetVersion.rows)
                .join(
                    DatasetVersion,
                    (DatasetVersion.name == latest.c.name) & (DatasetVersion.version == latest.c.v),
                )
                .order_by(latest.c.name)
            ).all()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def rows(self, version: DatasetVersion) -> Iterator[Row]:
        path = artifacts.artifact_path(self.home, version.digest)
        if not path.exists():
            raise NotFound(
                f"the rows of {version.name}/{version.version} ({version.digest[:12]}…) are missing from {path.parent}",
                param="dataset",
            )
        with path.open("rb") as f:
            for line in f:
                yield orjson.loads(line)


def view(v: DatasetVersion) -> dict[str, Any]:
    """A version as shown to people (JSON-ready)."""
    return {
        "name": v.name,
        "version": v.version,
        "digest": v.digest,
        "rows": v.rows,
        "size": v.size,
        "parent": v.parent,
        "lineage": v.lineage,
        "report": v.report,
        "description": v.description,
        "created_by": v.created_by,
        "created_at": v.created_at.isoformat(),
    }


def diff(a: Iterable[Row], b: Iterable[Row], *, examples: int = 3) -> dict[str, Any]:
    """Rows only in ``a``, only in ``b`` and in both (as multisets of canonical rows), with a few examples."""
    from collections import Counter

    left = Counter(canonical_line(r) for r in a)
    right = Counter(canonical_line(r) for r in b)
    removed, added = left - right, right - left
    return {
        "removed": sum(removed.values()),
        "added": sum(added.values()),
        "common": sum((left & right).values()),
        "removed_examples": [orjson.loads(x) for x in list(removed)[:examples]],
        "added_examples": [orjson.loads(x) for x in list(added)[:examples]],
    }
