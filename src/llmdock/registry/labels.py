"""Movable names on immutable versions: prompt labels and model aliases, one mechanism for both.

A label (``production``, ``staging``, ``champion``…) points at one version of one prompt or model. Moving it is
a *promotion*: audited as ``<kind>.promote`` with the version before and after. Each label remembers the
versions it pointed at before, so ``rollback`` moves it back one step (audited as ``<kind>.rollback``).
``latest`` is not stored: it always means the highest version.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from llmdock.errors import Conflict, InvalidRequest, NotFound
from llmdock.store import audit
from llmdock.store.audit import Actor
from llmdock.store.engine import Store
from llmdock.store.models import ModelVersion, PromptVersion, RegistryLabel

Kind = Literal["prompt", "model"]
RowT = TypeVar("RowT", PromptVersion, ModelVersion)
LATEST = "latest"
LABEL_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,99}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")
VERSIONS: dict[Kind, type[PromptVersion] | type[ModelVersion]] = {
    "prompt": PromptVersion,
    "model": ModelVersion,
}


def check_name(name: str, kind: Kind) -> str:
    if not NAME_RE.match(name):
        raise InvalidRequest(
            f"{kind} name {name!r}: letters, digits and _ . : - only, starting with a letter or digit",
            param="name",
        )
    return name


def check_label(label: str) -> str:
    if label == LATEST:
        raise InvalidRequest("'latest' always means the highest version; it cannot be set", param="label")
    if not LABEL_RE.match(label):
        raise InvalidRequest(
            f"label {label!r}: lower-case letters, digits and _ . - only, starting with a letter",
            param="label",
        )
    return label


class Labels:
    """The labels of one kind of registry."""

    def __init__(self, store: Store, kind: Kind) -> None:
        self.store = store
        self.kind: Kind = kind
        self.versions = VERSIONS[kind]

    def latest(self, name: str) -> int | None:
        model = self.versions
        with self.store.session() as s:
            latest: int | None = s.scalar(select(func.max(model.version)).where(model.name == name))
        return latest

    def _exists(self, name: str, version: int) -> None:
        with self.store.session() as s:
            if s.get(self.versions, (name, version)) is None:
                latest = self.latest(name)
                if latest is None:
                    raise NotFound(f"no {self.kind} {name!r}", param="name")
                raise NotFound(
                    f"{self.kind} {name!r} has no version {version} (latest: {latest})", param="version"
                )

    def get(self, name: str, label: str) -> int | None:
        """The version a label points at (None when the label is not set)."""
        if label == LATEST:
            return self.latest(name)
        with self.store.session() as s:
            row = s.get(RegistryLabel, (self.kind, name, label))
            return row.version if row else None

    def pointing(self, names: Collection[str]) -> dict[tuple[str, str], int]:
        """(name, label) -> version for every label of ``names``, ``latest`` included, in one session: what a
        running gateway polls to follow aliases (two small queries)."""
        if not names:
            return {}
        model = self.versions
        with self.store.session() as s:
            rows = s.execute(
                select(RegistryLabel.name, RegistryLabel.label, RegistryLabel.version).where(
                    RegistryLabel.kind == self.kind, RegistryLabel.name.in_(names)
                )
            ).all()
            latest = s.execute(
                select(model.name, func.max(model.version)).where(model.name.in_(names)).group_by(model.name)
            ).all()
        found = {(n, label): int(v) for n, label, v in rows}
        return found | {(n, LATEST): int(v) for n, v in latest}

    def of(self, name: str) -> dict[str, int]:
        with self.store.session() as s:
            rows = s.scalars(
                select(RegistryLabel).where(RegistryLabel.kind == self.kind, RegistryLabel.name == name)
            )
            return {r.label: r.version for r in rows}

    def set(self, name: str, label: str, version: int, actor: Actor) -> int | None:
        """Point ``label`` at ``version``; returns the version it pointed at before (None: it was new)."""
        check_label(label)
        self._exists(name, version)
        now = datetime.now(UTC)
        with self.store.session() as s, s.begin():
            row = s.get(RegistryLabel, (self.kind, name, label), with_for_update=True)
            before = row.version if row else None
            if row is None:
                s.add(
                    RegistryLabel(
                        kind=self.kind,
                        name=name,
                        label=label,
                        version=version,
                        previous=[],
                        updated_by=actor.name,
                        updated_at=now,
                    )
                )
            elif row.version != version:
                row.previous = [*row.previous, row.version][-20:]
                row.version, row.updated_by, row.updated_at = version, actor.name, now
        if before != version:
            self._audit("promote", name, label, before, version, actor)
        return before

    def rollback(self, name: str, label: str, actor: Actor) -> int:
        """Move a label back to the version it pointed at before its last move; returns that version."""
        now = datetime.now(UTC)
        with self.store.session() as s, s.begin():
            row = s.get(RegistryLabel, (self.kind, name, label), with_for_update=True)
            if row is None:
                raise NotFound(f"{self.kind} {name!r} has no label {label!r}", param="label")
            if not row.previous:
                raise Conflict(
                    f"label {label!r} of {self.kind} {name!r} has no earlier version", param="label"
                )
            before = row.version
            row.version, row.previous = row.previous[-1], row.previous[:-1]
            row.updated_by, row.updated_at = actor.name, now
            after = row.version
        self._audit("rollback", name, label, before, after, actor)
        return after

    def remove(self, name: str, label: str, actor: Actor) -> None:
        with self.store.session() as s, s.begin():
            row = s.get(RegistryLabel, (self.kind, name, label))
            if row is None:
                raise NotFound(f"{self.kind} {name!r} has no label {label!r}", param="label")
            before = row.version
            s.delete(row)
        self._audit("unlabel", name, label, before, None, actor)

    def _audit(
        self, verb: str, name: str, label: str, before: int | None, after: int | None, actor: Actor
    ) -> None:
        audit.record(
            self.store,
            f"{self.kind}.{verb}",
            actor,
            target=f"{name}@{label}",
            before=None if before is None else {"version": before},
            after=None if after is None else {"version": after},
        )


class Versioned(Generic[RowT]):
    """What prompt and model registries share: numbered versions of named things, and their labels."""

    kind: Kind
    row_type: type[RowT]
    labels_key: str  # what the labels are called in views: labels, aliases
    view_fields: tuple[str, ...]  # a version's view, in order; created_at is last

    def __init__(self, store: Store) -> None:
        self.store = store
        self.labels = Labels(store, self.kind)

    def _add_next(self, name: str, actor: Actor, fields: dict[str, Any], audited: tuple[str, ...]) -> RowT:
        """Insert the next version of ``name`` with ``fields``, audited as ``<kind>.create`` with the ``audited``
        ones; two writers at once may pick one number: the loser takes the next."""
        for _ in range(5):
            row = self.row_type(
                name=name,
                version=(self.labels.latest(name) or 0) + 1,
                created_by=actor.name,
                created_at=datetime.now(UTC),
                **fields,
            )
            try:
                with self.store.session() as s, s.begin():
                    s.add(row)
            except IntegrityError:
                continue
            audit.record(
                self.store,
                f"{self.kind}.create",
                actor,
                target=f"{name}/{row.version}",
                after={k: fields[k] for k in audited},
            )
            return row
        raise Conflict(f"could not number a new version of {self.kind} {name!r}; try again", param="name")

    def names(self) -> list[tuple[str, int, int]]:
        """(name, number of versions, latest version) of everything registered."""
        t = self.row_type
        with self.store.session() as s:
            rows = s.execute(
                select(t.name, func.count(), func.max(t.version)).group_by(t.name).order_by(t.name)
            ).all()
        return [(n, c, m) for n, c, m in rows]

    def summary(self, labels_key: str) -> list[dict[str, Any]]:
        """Every name with its number of versions, latest version and ``{label: version}`` under ``labels_key``."""
        return [
            {"name": n, "versions": c, "latest": m, labels_key: self.labels.of(n)} for n, c, m in self.names()
        ]

    def versions(self, name: str) -> list[RowT]:
        t = self.row_type
        with self.store.session() as s:
            rows = list(s.scalars(select(t).where(t.name == name).order_by(t.version)))
        if not rows:
            raise NotFound(f"no {self.kind} {name!r} in the registry", param="name")
        return rows

    def _row(self, name: str, version: int) -> RowT:
        with self.store.session() as s:
            row = s.get(self.row_type, (name, version))
        if row is None:
            self.versions(name)  # NotFound for an unknown name
            raise NotFound(f"{self.kind} {name!r} has no version {version}", param="version")
        return row

    @classmethod
    def view(cls, row: RowT, labels: list[str] | None = None) -> dict[str, Any]:
        """A version as shown to people (JSON-ready): its ``view_fields`` in order, ``labels_key`` standing for
        the labels pointing at it."""
        out = {f: labels or [] if f == cls.labels_key else getattr(row, f) for f in cls.view_fields}
        return out | {"created_at": row.created_at.isoformat()}

    def described(self, name: str) -> list[dict[str, Any]]:
        """Every version of ``name``, described, with its labels."""
        labels = self.labels_by_version(name)
        return [self.view(v, labels.get(v.version)) for v in self.versions(name)]

    def described_one(self, row: RowT) -> dict[str, Any]:
        return self.view(row, self.labels_by_version(row.name).get(row.version))

    def labels_by_version(self, name: str) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for label, version in sorted(self.labels.of(name).items()):
            out.setdefault(version, []).append(label)
        return out
