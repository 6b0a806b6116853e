"""Dataset versions (issue 20): one row per version; the rows themselves are a content-addressed artifact.

``digest`` is the sha256 of the version's canonical JSONL file (``<home>/artifacts/<digest>``), so a version is
identified by its content: the same rows imported twice have the same digest. ``lineage`` says where the rows
came from and what was done to them: ``sources`` (each file's path, sha256 and format, or the trace filters)
and ``steps`` (each step's name, parameters and counts kept and dropped, with reasons).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from llmdock.store.models import Base


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    digest: Mapped[str] = mapped_column(String(64), index=True)  # sha256 of the rows file (the artifact)
    rows: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    parent: Mapped[str] = mapped_column(String(64), default="")  # digest of the version it was made from
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column()
