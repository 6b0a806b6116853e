"""optuna's journal of hyperparameter searches (``llmdock finetune search``), kept in llmdock's store.

optuna's own RDBStorage would create its tables (and an ``alembic_version`` of its own, the name llmdock's
migrations use) in the same database; its journal storage instead writes an append-only log of operations
through a small backend, and this table holds that log: one row per operation, in order. A search killed
at any moment leaves a log optuna replays, so running it again continues the study.
"""

from __future__ import annotations

from sqlalchemy import Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from llmdock.store.models import Base


class FinetuneSearchLog(Base):
    __tablename__ = "finetune_search_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    log: Mapped[str] = mapped_column(Text)  # one optuna journal operation, JSON
