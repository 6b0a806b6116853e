"""Topic drift and refusal-rate drift.

**Topics.** The reference window's sentence embeddings (the same all-MiniLM-L6-v2 sample the meaning test
uses) are clustered with k-means (scikit-learn; ``k`` grows with the sample, 2 to 8); each cluster is named by
the words most particular to its texts (a word must occur in at least ``MIN_WORD_TEXTS`` of them, so no one
caller's name or number becomes a label). The centroids, the reference's count per topic and the names are
stored with the reference; the current window's texts are assigned to the nearest reference centroid, or to
``new`` when farther from every centroid than any reference text is from its own, plus half (a topic the
reference never had), and the two windows' shares compared with a chi-square test of homogeneity. Why embeddings and not a glossary of
keywords: users phrase the same topic many ways and in several languages, a keyword list has to be written
and kept, and the embeddings are already computed for the meaning test; the word labels make the clusters
readable ("pasta, boil, sauce 40% -> 5%").

**Refusals.** The ``refusal`` guard detector (guards/detectors/output.py) on each answer: the share of answers
that refuse, compared between the windows with Fisher's exact test (a two-proportion test, exact for small
counts), like the error rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MIN_WORD_TEXTS = 3
NEW = "new: unlike any reference topic"
RADIUS_MARGIN = 1.5
MAX_TOPICS = 8
TEXTS_PER_TOPIC = 25  # k = sample / 25, between 2 and MAX_TOPICS


@dataclass
class Topics:
    """A reference window's topics: centroids (rows), how many of its texts fell in each, their names."""

    centroids: np.ndarray
    counts: list[int]  # per topic, then the texts unlike any (farther than ``radius``)
    names: list[str] = field(default_factory=list)
    radius: float = float(
        "inf"
    )  # beyond the farthest reference text from its topic's centroid (plus a margin)

    def shares(self, counts: list[int]) -> dict[str, int]:
        names = [*self.names, NEW]
        return {names[i] if i < len(names) else f"topic {i + 1}": c for i, c in enumerate(counts)}

    def assign(self, x: np.ndarray) -> list[int]:
        """How many rows of ``x`` are nearest each centroid, and (last) how many are farther than ``radius``
        from every centroid: a topic the reference did not have lands there, not in its nearest old topic."""
        distances = np.sqrt(((x[:, None, :] - self.centroids[None, :, :]) ** 2).sum(-1))
        nearest = distances.argmin(1)
        far = distances.min(1) > self.radius
        counts = np.bincount(nearest[~far], minlength=len(self.centroids))
        return [*(int(c) for c in counts), int(far.sum())]


def fit_topics(x: np.ndarray, texts: list[str], seed: int = 0) -> Topics | None:
    """k-means on the reference's embeddings ``x`` (one row per text of ``texts``); None under 10 texts."""
    from sklearn.cluster import KMeans

    distinct = len(np.unique(np.round(x, 6), axis=0))
    if len(x) < 10 or distinct < 2:  # too few texts, or all the same: no topics to tell apart
        return None
    k = int(min(MAX_TOPICS, distinct, max(2, len(x) // TEXTS_PER_TOPIC)))
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
    centroids = np.asarray(km.cluster_centers_, dtype=np.float64)
    own = np.linalg.norm(x - centroids[km.labels_], axis=1)
    topics = Topics(
        centroids, [], topic_names(texts, km.labels_.tolist(), k), RADIUS_MARGIN * float(own.max())
    )
    topics.counts = topics.assign(x)
    return topics


def topic_names(texts: list[str], labels: list[int], k: int, words: int = 3) -> list[str]:
    """Each cluster's most particular words: the share of its texts holding the word minus the share of all
    texts holding it, among words in at least ``MIN_WORD_TEXTS`` of its texts (English stop words left out)."""
    from sklearn.feature_extraction.text import CountVectorizer

    names = [f"topic {i + 1}" for i in range(k)]
    try:
        vectorizer = CountVectorizer(binary=True, stop_words="english", min_df=MIN_WORD_TEXTS)
        m = vectorizer.fit_transform(texts)
    except ValueError:  # no word in enough texts
        return names
    vocabulary = vectorizer.get_feature_names_out()
    overall = np.asarray(m.mean(0)).ravel()
    assigned = np.asarray(labels)
    for i in range(k):
        rows = m[assigned == i]
        if rows.shape[0] == 0:
            continue
        present = np.asarray(rows.sum(0)).ravel()
        score = np.where(present >= MIN_WORD_TEXTS, present / rows.shape[0] - overall, -np.inf)
        best = [int(j) for j in np.argsort(-score)[:words] if np.isfinite(score[j]) and score[j] > 0]
        if best:
            names[i] = ", ".join(str(vocabulary[j]) for j in best)
    return names


async def refusals(outputs: list[str]) -> int:
    """How many answers the ``refusal`` guard detector flags."""
    from llmdock.guards.base import GuardText
    from llmdock.guards.detectors.output import RefusalDetector
    from llmdock.guards.policy import DetectorEnv

    detector = RefusalDetector(RefusalDetector.Params(), DetectorEnv(Path(".")))
    found = 0
    for text in outputs:
        if text.strip():
            verdict = await detector.detect(GuardText(text, "answer", "output"))
            found += verdict.score > 0
    return found
