"""Leases and guarded updates on store rows: one conditional UPDATE, so of several processes (workers of
several gateways, a runner and a resume) exactly one wins.

:func:`guarded_update` is the primitive: a row is changed only while every condition still holds (its owner,
its revision, its status), and whoever sees ``False`` lost the race. :class:`Lease` is that primitive on a
row's owner and expiry columns: ``take`` (the row is free, lapsed, or already this holder's), ``renew`` (still
this holder's), ``holder`` and ``resign``. The users: the Batch API's runner (``jobs/batch_lease.py``), a
pipeline run's runner (``jobs/run_store.py``) and the experiments book's revision-guarded changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session


def guarded_update(
    s: Session, model: type[Any], where: Sequence[ColumnElement[bool]], values: Mapping[str, Any]
) -> bool:
    """Set ``values`` on the rows of ``model`` matching every condition of ``where``, in one UPDATE; True
    when a row matched (the caller won), False when none did (gone, or changed by someone else first)."""
    done = s.execute(update(model).where(*where).values(**values))
    return bool(done.rowcount)  # type: ignore[attr-defined]


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite gives naive UTC back


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease kept in two columns of a table: who holds it (``owner``, "" or None when nobody) and until
    when (``until``). ``where`` names the row(s) each call is about (a lease name, a run id)."""

    model: type[Any]
    owner: InstrumentedAttribute[Any]
    until: InstrumentedAttribute[Any]

    def take(self, s: Session, where: Sequence[ColumnElement[bool]], holder: str, seconds: float) -> bool:
        """Hold the row for ``seconds`` if it is free, lapsed or already ``holder``'s."""
        now = datetime.now(UTC)
        free = or_(self.owner == holder, self.until.is_(None), self.until < now)
        return self._set(s, [*where, free], holder, now + timedelta(seconds=seconds))

    def renew(self, s: Session, where: Sequence[ColumnElement[bool]], holder: str, seconds: float) -> bool:
        """Extend ``holder``'s lease; False when the row is no longer ``holder``'s (or ``where`` fails)."""
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        return self._set(s, [*where, self.owner == holder], holder, until)

    def holder(self, s: Session, where: Sequence[ColumnElement[bool]]) -> str:
        """Who holds the row now ("" when nobody does, or the lease has lapsed)."""
        row = s.execute(select(self.owner, self.until).where(*where)).first()
        if row is None or row[1] is None or _utc(row[1]) < datetime.now(UTC):
            return ""
        return str(row[0] or "")

    def resign(self, s: Session, where: Sequence[ColumnElement[bool]], holder: str) -> None:
        """Give the row back at once, if ``holder`` has it."""
        self._set(s, [*where, self.owner == holder], "", None)

    def _set(
        self, s: Session, where: Sequence[ColumnElement[bool]], owner: str, until: datetime | None
    ) -> bool:
        values = {self.owner.key: owner, self.until.key: until}
        return guarded_update(s, self.model, where, values)
