"""Topic and refusal drift: the reference's embeddings clustered into named topics, stored with the reference
and reused; a shift of the topic mix, or a topic the reference never had, drifts, the same mix does not; more refusing answers
(the ``refusal`` guard detector) drift, as many do not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer

from llmdock.monitor.drift import Window, drift
from llmdock.monitor.drift_report import render
from llmdock.monitor.drift_summary import Summary, summarize
from llmdock.monitor.reference import get_reference, set_reference
from llmdock.store import Store
from tests.unit.test_monitor_drift import CODE, COOKING, ENGLISH, add, sentences

HASHER = HashingVectorizer(n_features=128, alternate_sign=False, norm="l2")


async def embed(texts: list[str]) -> list[list[float]]:
    """A bag-of-words stand-in for MiniLM (same interface, deterministic, no model): texts sharing words
    are near each other."""
    return [[float(v) for v in row] for row in HASHER.transform(texts).toarray()]


def window(inputs: list[str], outputs: list[str] | None = None) -> Window:
    outputs = outputs or ["Here is what I would suggest."] * len(inputs)
    return Window(inputs, outputs, [10] * len(inputs), [5] * len(inputs))


def mix(cooking: int, code: int, offset: int = 0) -> list[str]:
    return sentences(COOKING, cooking, offset) + sentences(CODE, code, offset)


async def test_a_shift_of_topics_drifts_and_the_same_mix_does_not() -> None:
    ref = await summarize(window(mix(60, 60)), embed, max_samples=300)
    topics = ref.topics["inputs"]
    assert sum(topics.counts) == 120
    assert len(topics.centroids) == 4  # 120 texts / 25, at least 2
    assert any("python" in name or "function" in name for name in topics.names), topics.names
    shifted = {r.name: r for r in await drift(ref, window(mix(10, 110, offset=3)), embed, permutations=20)}
    assert shifted["inputs: topic"].drifted
    assert shifted["inputs: topic"].test == "chi-square"
    same = {r.name: r for r in await drift(ref, window(mix(30, 30)), embed, permutations=20)}
    assert not same["inputs: topic"].drifted
    new = {r.name: r for r in await drift(ref, window(sentences([ENGLISH], 60)), embed, permutations=20)}
    assert new["inputs: topic"].drifted  # a topic the reference never had is not filed under an old one
    assert new["inputs: topic"].mix[1]["new: unlike any reference topic"] == 60
    page = render("m", list(shifted.values()), reference="7d", current="1d", ref_n=120, cur_n=120, alpha=0.05)
    assert "<h2>inputs: topic</h2>" in page
    assert "topic (its most particular words)" in page


async def test_more_refusing_answers_drift_as_many_do_not() -> None:
    helpful = ["Roast it for about an hour at 180 degrees."] * 80
    refusing = ["I'm sorry, but I can't help with that request."] * 30 + helpful[:50]
    rows = {r.name: r for r in await drift(window(mix(40, 40), helpful), window(mix(40, 40), refusing), None)}
    row = rows["refusal rate (answers)"]
    assert row.drifted
    assert (row.reference, row.current) == ("0.00%", "37.50%")
    assert row.test == "Fisher exact"
    few = ["I'm sorry, but I can't help with that request."] * 2 + helpful[:78]
    calm = {r.name: r for r in await drift(window(mix(40, 40), few), window(mix(40, 40), few), None)}
    assert not calm["refusal rate (answers)"].drifted


async def test_a_stored_reference_keeps_its_topics_and_drift_assigns_to_them(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'drift.db'}")
    now = datetime.now(UTC)
    add(store, "m", mix(50, 50), now - timedelta(days=3))
    made = await set_reference(store, "m", now - timedelta(days=7), now - timedelta(days=1), embed, "hash")
    got = get_reference(store, "m")
    store.close()
    assert got is not None
    stored, fresh = got.summary.topics["inputs"], made.summary.topics["inputs"]
    assert (stored.counts, stored.names) == (fresh.counts, fresh.names)
    assert np.allclose(stored.centroids, fresh.centroids, atol=1e-6)
    assert got.summary.rates["refusal rate (answers)"] == (0, 100)
    assert set(got.summary.embeddings) == {"inputs", "outputs"}  # the centroids are not taken for texts
    rows = {r.name: r for r in await drift(got.summary, window(mix(5, 95)), embed, permutations=20)}
    assert rows["inputs: topic"].drifted
    assert isinstance(got.summary, Summary)
