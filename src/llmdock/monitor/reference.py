"""A model's drift reference, computed once and stored (``llmdock monitor reference set``), then read by every
drift report (``llmdock monitor drift``) instead of re-reading and re-embedding the reference window's traces.

One reference per model: setting it again replaces it. It records the window it summarises and the embedding
model its vectors came from; a report whose embedding model differs compares no embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from llmdock.monitor.drift_summary import Embed, Summary, summarize
from llmdock.monitor.drift_window import load_window
from llmdock.store.engine import Store
from llmdock.store.monitor_eval_rows import DriftReference


@dataclass(frozen=True, slots=True)
class StoredReference:
    model: str
    since: datetime
    until: datetime
    created_at: datetime
    embedding_model: str
    summary: Summary


async def set_reference(
    store: Store,
    model: str,
    since: datetime,
    until: datetime,
    embed: Embed | None,
    embedding_model: str,
    max_samples: int = 300,
) -> StoredReference:
    """Summarise the model's traces in ``[since, until)`` and store the summary as its reference."""
    summary = await summarize(load_window(store, model, since, until), embed, max_samples)
    row = DriftReference(
        model=model,
        since=since,
        until=until,
        created_at=datetime.now(UTC),
        traces=summary.n,
        window_s=(until - since).total_seconds(),
        embedding_model=embedding_model if summary.embeddings else "",
        stats=summary.to_json(),
        embeddings=summary.embeddings_blob(),
    )
    with store.session() as s, s.begin():
        s.merge(row)
    return StoredReference(model, since, until, row.created_at, row.embedding_model, summary)


def get_reference(store: Store, model: str) -> StoredReference | None:
    with store.session() as s:
        row = s.get(DriftReference, model)
        if row is None:
            return None
        summary = Summary.from_json(row.stats, row.embeddings)
        return StoredReference(model, row.since, row.until, row.created_at, row.embedding_model, summary)
