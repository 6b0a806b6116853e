"""A window of traffic reduced to what drift compares: samples of lengths and tokens, outcome counts (errors,
guard blocks, refusals), the language mix, online-evaluation scores, a sample of embeddings and, for a
reference, the topics those embeddings cluster into (drift_topics.py).

The reference window is summarised once and stored (``llmdock monitor reference set``; monitor/reference.py):
a summary is small (at most ``MAX_VALUES`` values per distribution, ``max_samples`` embeddings per text kind)
and holds no text, so drift reports read it instead of re-reading and re-embedding a week of traces.

Languages come from py3langid (97 languages; its model ships in the package), on the first
``LANGUAGE_CHARS`` characters of each text; texts shorter than ``MIN_LANGUAGE_CHARS`` are not identified
(too short to tell).
"""

from __future__ import annotations

import functools
import io
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmdock.monitor.drift_topics import Topics, fit_topics, refusals
from llmdock.monitor.drift_window import Window

Embed = Callable[[list[str]], Awaitable[list[list[float]]]]
MAX_VALUES = 5000
LANGUAGE_CHARS = 300
MIN_LANGUAGE_CHARS = 12
TEXTS = ("inputs", "outputs")
TOPICS = "topics-"  # the centroids' names in the embeddings blob


@dataclass
class Summary:
    n: int = 0
    samples: dict[str, list[float]] = field(default_factory=dict)  # statistic -> values
    rates: dict[str, tuple[int, int]] = field(default_factory=dict)  # statistic -> (hits, n)
    languages: dict[str, dict[str, int]] = field(default_factory=dict)  # inputs/outputs -> language -> count
    scores: dict[str, list[float]] = field(default_factory=dict)  # online-evaluation score -> values
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # inputs/outputs -> rows of vectors
    topics: dict[str, Topics] = field(
        default_factory=dict
    )  # inputs/outputs -> k-means topics (a reference's)

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "samples": self.samples,
            "rates": {k: list(v) for k, v in self.rates.items()},
            "languages": self.languages,
            "scores": self.scores,
            "topics": {
                k: {"counts": t.counts, "names": t.names, "radius": t.radius} for k, t in self.topics.items()
            },
        }

    def embeddings_blob(self) -> bytes | None:
        if not self.embeddings:
            return None
        buffer = io.BytesIO()
        arrays: dict[str, Any] = {k: v.astype(np.float32) for k, v in self.embeddings.items()}
        arrays |= {f"{TOPICS}{k}": t.centroids.astype(np.float32) for k, t in self.topics.items()}
        np.savez_compressed(buffer, allow_pickle=False, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_json(cls, data: dict[str, Any], blob: bytes | None) -> Summary:
        embeddings: dict[str, np.ndarray] = {}
        if blob:
            with np.load(io.BytesIO(blob)) as found:
                embeddings = {k: np.asarray(found[k], dtype=np.float64) for k in found.files}
        centroids = {
            k.removeprefix(TOPICS): embeddings.pop(k) for k in list(embeddings) if k.startswith(TOPICS)
        }
        topics = {
            k: Topics(
                centroids[k], [int(c) for c in t["counts"]], [str(n) for n in t["names"]], float(t["radius"])
            )
            for k, t in data.get("topics", {}).items()
            if k in centroids
        }
        return cls(
            int(data.get("n", 0)),
            {k: [float(x) for x in v] for k, v in data.get("samples", {}).items()},
            {k: (int(v[0]), int(v[1])) for k, v in data.get("rates", {}).items()},
            {k: {lang: int(c) for lang, c in v.items()} for k, v in data.get("languages", {}).items()},
            {k: [float(x) for x in v] for k, v in data.get("scores", {}).items()},
            embeddings,
            topics,
        )


def _capped(values: list[float], rng: random.Random) -> list[float]:
    return values if len(values) <= MAX_VALUES else rng.sample(values, MAX_VALUES)


@functools.cache
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def languages(texts: list[str], limit: int = MAX_VALUES) -> dict[str, int]:
    """How many of ``texts`` (a fixed sample of at most ``limit``) are in each language."""
    usable = [t for t in texts if len(t.strip()) >= MIN_LANGUAGE_CHARS]
    if len(usable) > limit:
        usable = random.Random(0).sample(usable, limit)
    identify = _identifier()
    return dict(Counter(identify.classify(t[:LANGUAGE_CHARS])[0] for t in usable))


async def summarize(
    window: Window, embed: Embed | None, max_samples: int = 300, *, topics: bool = True
) -> Summary:
    """``window`` as drift compares it; its texts embedded (a fixed sample of ``max_samples`` per kind) when
    ``embed`` is given, and with ``topics`` (a reference) those embeddings clustered into topics."""
    rng = random.Random(0)
    w = window
    s = Summary(n=w.n)
    s.samples = {
        "input length (chars)": _capped([float(len(t)) for t in w.inputs], rng),
        "output length (chars)": _capped([float(len(t)) for t in w.outputs], rng),
        "prompt tokens": _capped([float(t) for t in w.prompt_tokens], rng),
        "completion tokens": _capped([float(t) for t in w.completion_tokens], rng),
    }
    answered = [t for t in w.outputs if t.strip()]
    s.rates = {
        "error rate": (w.errors, w.n),
        "guard-block rate": (w.blocked, w.n),
        "refusal rate (answers)": (await refusals(answered), len(answered)),
    }
    s.languages = {"inputs": languages(w.inputs), "outputs": languages(w.outputs)}
    s.scores = {name: _capped(values, rng) for name, values in sorted(w.scores.items())}
    if embed is not None:
        for kind, texts in (("inputs", w.inputs), ("outputs", w.outputs)):
            chosen = [t for t in texts if t.strip()]
            chosen = random.Random(0).sample(chosen, min(max_samples, len(chosen)))
            if len(chosen) >= 5:
                s.embeddings[kind] = np.asarray(await embed(chosen), dtype=np.float64)
                found = fit_topics(s.embeddings[kind], chosen) if topics else None
                if found is not None:
                    s.topics[kind] = found
    return s
