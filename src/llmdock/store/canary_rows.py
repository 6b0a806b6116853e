"""Provider canaries (llmdock.monitor.canary): a pinned evaluation suite asked of a hosted model on a schedule,
each run compared with the first (the baseline).

- ``canary_canaries``: one per canary: the model it watches, the suite pinned by its sha256, the jobs
  schedule that runs it (``job_schedules``), the channels it alerts and its thresholds, and its baseline run
  (an ``eval_runs`` id: ``llmdock eval show`` and ``eval report`` read it like any other run).
- ``canary_runs``: every run: its evaluation run, the share of answers unchanged from the baseline, what
  changed (``findings``), and the firing it opened or updated.
- ``canary_firings``: one incident of a canary: opened by the first run that finds a change, updated (not
  sent again) by later runs that find the same kinds of change, resolved by a run that finds none.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from llmdock.store.models import Base
from llmdock.store.monitor_rows import FiringColumns


class Canary(Base):
    __tablename__ = "canary_canaries"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    target: Mapped[str] = mapped_column(String(200))  # a configured model
    suite_path: Mapped[str] = mapped_column(Text)
    suite_sha256: Mapped[str] = mapped_column(String(64))  # of the suite file and its dataset, when added
    cron: Mapped[str] = mapped_column(String(120))
    every: Mapped[str] = mapped_column(String(32), default="")  # as given (6h), or empty for --cron
    schedule_id: Mapped[str] = mapped_column(String(32), default="")
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    baseline_run: Mapped[str] = mapped_column(String(32), default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column()


class CanaryRun(Base):
    """One run of a canary: ``status`` is ``baseline`` (it became the baseline), ``same`` or ``changed``."""

    __tablename__ = "canary_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    canary: Mapped[str] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(16))
    eval_run: Mapped[str] = mapped_column(String(32), default="")
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{kind, message}]
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime] = mapped_column()
    unchanged: Mapped[float | None] = mapped_column(
        Float, default=None
    )  # share of answers as in the baseline
    firing_id: Mapped[int | None] = mapped_column(Integer, default=None)


class CanaryFiring(FiringColumns, Base):
    __tablename__ = "canary_firings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    canary: Mapped[str] = mapped_column(String(100), index=True)
    target: Mapped[str] = mapped_column(String(200))
    kinds: Mapped[list[str]] = mapped_column(JSON, default=list)  # what changed: answers, score, served…
