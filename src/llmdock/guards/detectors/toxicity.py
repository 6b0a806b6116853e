"""Toxicity, harassment and self-harm, in prompts and answers.

Mentioning a sensitive subject (an illness, a war, a crime, an identity) is not toxicity: the classifier learns
from benign text on those subjects too (``training.training_rows``), its threshold keeps such text under 5 %
false positives on validation, and a classifier per category (abuse, hate, threat, sexual, self-harm) says
which kind of harm a text is (``details["categories"]``; a flagged text's finding is labelled with the top
category). The category classifiers are not calibrated on text from elsewhere (a polite parcel enquiry scores
0.53 for "threat"), so they name the harm and do not decide. The decision is the overall classifier's, so a category policy can be layered on the scores.

Layers: self-harm phrasings (a heuristic: these deserve a label of their own and are rare in training
data); a classifier llmdock trains (:mod:`llmdock.guards.training`, task ``toxicity``: RealToxicityPrompts'
challenging prompts and human-scored harmful answers from PyRIT against benign requests); and the model
``alt-profanity-check`` ships (a linear SVM over word TF-IDF, trained on about 200,000 labelled comments,
MIT). That package's ``predict_prob`` goes through scikit-learn's ``CalibratedClassifierCV`` (five
calibrated copies, ~6 ms per call); the same arithmetic is done here over the words of the text (~0.1 ms,
checked equal by a unit test): the vectorizer's own analyzer splits the text, and the TF-IDF vector's
product with the five SVMs is a sum over the vocabulary rows of those words, so neither scikit-learn's
input validation nor a sparse matrix is built per call (that was ~0.8 ms of the ~1 ms).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import partial
from operator import is_not
from typing import Any

import numpy as np
from pydantic import Field

from llmdock.guards.base import BaseDetector, DetectorParams, Finding, GuardText, Verdict
from llmdock.guards.features import Stacked
from llmdock.guards.normalize import warm_up
from llmdock.guards.policy import DetectorEnv
from llmdock.guards.training import CATEGORIES, TextClassifier, ensure_model

SELF_HARM = re.compile(
    r"\b(?:kill(?:ing)?\s+myself|end(?:ing)?\s+my\s+(?:own\s+)?life|(?:commit|committing)\s+suicide|"
    r"suicidal|want\s+to\s+die|(?:cut|cutting|hurt|hurting|harm|harming)\s+myself|take\s+my\s+own\s+life|"
    r"self[-\s]harm)\b"
)


_FOUND = partial(is_not, None)  # a vocabulary row (0 included), not a miss


class ProfanityModel:
    """alt-profanity-check's calibrated linear SVMs, evaluated as one matrix product."""

    def __init__(self) -> None:
        from profanity_check import profanity_check

        vectorizer = profanity_check.vectorizer
        # its analyzer (words of 2+ characters of the lower-cased text, less English stop words), in two C
        # calls: the tokens are found here, and a stop word, never in the vocabulary, finds no row
        self.tokens = re.compile(vectorizer.token_pattern).findall
        stop = vectorizer.get_stop_words() or frozenset()
        self.vocabulary: dict[str, int] = {w: i for w, i in vectorizer.vocabulary_.items() if w not in stop}
        self.idf = vectorizer.idf_
        folds = profanity_check.model.calibrated_classifiers_
        weights = np.stack([f.estimator.coef_[0] for f in folds], axis=1)
        self.idf_weights = weights * self.idf[:, None]  # row w: idf(w) times each SVM's weight of w
        self.intercepts = np.array([f.estimator.intercept_[0] for f in folds])
        self.a = np.array([f.calibrators[0].a_ for f in folds])
        self.b = np.array([f.calibrators[0].b_ for f in folds])

    def score(self, text: str) -> float:
        """The mean of the five calibrated SVMs' probabilities for the text's L2-normalised TF-IDF vector."""
        counts = Counter(filter(_FOUND, map(self.vocabulary.get, self.tokens(text.lower()))))
        decision = self.intercepts
        if counts:
            rows = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            norm = float(np.sqrt(((tf * self.idf[rows]) ** 2).sum()))
            decision = decision + (tf @ self.idf_weights[rows]) / norm
        return float(np.mean(1.0 / (1.0 + np.exp(self.a * decision + self.b))))


class ToxicityParams(DetectorParams):
    profanity_model: bool = True
    categories: bool = Field(
        default=True,
        description="score each category (abuse, hate, threat, sexual, self-harm) in the details",
    )


class ToxicityDetector(
    BaseDetector,
    name="toxicity",
    directions={"input", "output"},
    Params=ToxicityParams,
    action="block",
    roles=("user", "prompt", "answer"),
):
    def __init__(self, params: ToxicityParams, env: DetectorEnv) -> None:
        self.model: TextClassifier = ensure_model(env.model_dir, "toxicity")
        warm_up()
        self.profanity = ProfanityModel() if params.profanity_model else None
        self.categories: dict[str, TextClassifier] = (
            {c: ensure_model(env.model_dir, "toxicity", category=c) for c in CATEGORIES}
            if params.categories
            else {}
        )
        # the overall classifier and the categories score the same features: one gather for all of them
        models = [self.model, *self.categories.values()]
        self.stacked = Stacked([(m.char_coef, m.word_coef, m.intercept) for m in models])
        for i, m in enumerate(models):  # the models keep views of the stacked weights, not a second copy
            m.char_coef, m.word_coef = self.stacked.char[:, i], self.stacked.word[:, i]

    async def detect(self, item: GuardText) -> Verdict:
        norm = item.normalized()
        match = SELF_HARM.search(norm.text)
        if match is not None:
            start = item.text.lower().find(match.group())
            span = (start, start + len(match.group())) if start >= 0 else (0, len(item.text))
            return Verdict(0.9, "heuristic:self-harm", [Finding(*span, "self-harm", 0.9)])
        overall, *categories = self.stacked.logits(item.ngrams().ids())
        score = self.model._rescaled(overall)
        layer = "classifier"
        details: dict[str, Any] = {"classifier": round(score, 4)}
        label = "toxic"
        if self.categories:
            per = {
                c: round(m._rescaled(z), 4)
                for (c, m), z in zip(self.categories.items(), categories, strict=True)
            }
            details["categories"] = per
            label = max(per, key=per.__getitem__)
        if self.profanity is not None:
            profanity = self.profanity.score(item.text)
            details["profanity_model"] = round(profanity, 4)
            if profanity > score:
                score, layer = profanity, "profanity-model"
        label = label if score >= 0.5 else "toxic"  # a category names the harm of a flagged text only
        return Verdict(score, layer, [Finding(0, len(item.text), label, score)], details)
