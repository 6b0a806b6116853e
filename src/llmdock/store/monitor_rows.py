"""Alert firings and silences (llmdock.monitor.alerts): every firing is kept and listed (`llmdock alerts list`).

A firing is one incident of one rule on one model: while the condition keeps holding, later evaluations update
its ``last_seen_at`` and ``repeats`` instead of adding rows (deduplication); it is ``resolved_at`` once the
condition no longer holds. ``deliveries`` says, per channel, whether its notification was sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from sqlalchemy import JSON, Float, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from llmdock.store.engine import Store
from llmdock.store.models import Base


class FiringColumns:
    """What a firing records, an alert rule's or a provider canary's (store/canary_rows.py): when it fired and
    was last seen, when it resolved, how often it was seen again, when and where it was sent."""

    message: Mapped[str] = mapped_column(Text, default="")
    fired_at: Mapped[datetime] = mapped_column(index=True)
    last_seen_at: Mapped[datetime] = mapped_column()
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    repeats: Mapped[int] = mapped_column(Integer, default=0)
    notified_at: Mapped[datetime | None] = mapped_column(default=None)
    deliveries: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    @classmethod
    def opened(cls, now: datetime, **fields: Any) -> Self:
        """A new firing, first seen ``now``."""
        make: Any = cls  # a mapped subclass takes its columns as keywords
        firing: Self = make(fired_at=now, last_seen_at=now, repeats=0, deliveries={}, **fields)
        return firing


class AlertFiring(FiringColumns, Base):
    __tablename__ = "alert_firings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(200), index=True)
    model: Mapped[str] = mapped_column(String(200), default="")
    metric: Mapped[str] = mapped_column(String(32))
    condition: Mapped[str] = mapped_column(String(16))
    value: Mapped[float] = mapped_column(Float)
    expected: Mapped[str] = mapped_column(String(200), default="")  # the bound or the baseline it broke


class AlertSilence(Base):
    """No notification for ``rule`` (on ``model``, or every model when empty) until ``until``."""

    __tablename__ = "alert_silences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(200), index=True)
    model: Mapped[str] = mapped_column(String(200), default="")
    until: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
    reason: Mapped[str] = mapped_column(Text, default="")


def list_firings(store: Store, *, limit: int = 50, rule: str | None = None) -> list[AlertFiring]:
    """The newest firings first."""
    with store.session() as s:
        q = select(AlertFiring).order_by(AlertFiring.fired_at.desc(), AlertFiring.id.desc()).limit(limit)
        if rule:
            q = q.where(AlertFiring.rule == rule)
        return list(s.scalars(q))


def add_silence(
    store: Store, rule: str, model: str, until: datetime, now: datetime, reason: str = ""
) -> None:
    with store.session() as s, s.begin():
        s.add(AlertSilence(rule=rule, model=model, until=until, created_at=now, reason=reason))
