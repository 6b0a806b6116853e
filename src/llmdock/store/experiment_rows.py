"""A/B experiments (``llmdock.experiments``): one row per experiment, its variants and guard rails as JSON.

``revision`` grows with every change, so a gateway polls one cheap ``max(revision)`` to know whether its
cached copy of the running experiments is stale.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from llmdock.store.models import Base


class ExperimentRow(Base):
    __tablename__ = "experiment_definitions"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # running | concluded | stopped
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    match: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sticky: Mapped[str] = mapped_column(String(16))  # user | session | key
    guard: Mapped[dict[str, Any]] = mapped_column(default=dict)
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime | None] = mapped_column(nullable=True)
    winner: Mapped[str] = mapped_column(String(64), default="")
    revision: Mapped[int] = mapped_column(Integer, index=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
