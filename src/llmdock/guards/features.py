"""Hashed character and word n-gram features, computed with numpy in tens of microseconds.

scikit-learn's ``HashingVectorizer`` computes the same kind of features but costs about 5 ms per
1,000-character prompt (Python n-gram lists, parameter validation, sparse-matrix construction), half the
whole input chain's budget of 10 ms. Here the n-grams of all lengths are rolling polynomial hashes over the
code points (vectorised), finished with the murmur3 mixer; a text becomes the sorted set of its feature
indices. Features are binary and L2-normalised per block, so a linear model's logit is the sum of the
weights at those indices divided by the square root of their count: no sparse matrix at inference.
Training builds the same features into a CSR matrix (:func:`matrix`).

A text scored as a whole and in windows (the injection detector's long texts) is hashed once:
:class:`Ngrams` keeps every n-gram's index by position, and a window takes its slice of them, giving
exactly the features of the window's own text.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import scipy.sparse as sp

CHAR_FEATURES = 2**18
WORD_FEATURES = 2**18
CHAR_NGRAMS = (2, 5)
_PRIME = np.uint64(0x100000001B3)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_S33 = np.uint64(33)
_BIGRAM = np.uint64(7)
_WORD = re.compile(r"\w+")
_SPACES = re.compile(r"\s+")
_EMPTY = np.zeros(0, dtype=np.int64)


def _mix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _S33)
    h = h * _M1
    mixed: np.ndarray = h ^ (h >> _S33)
    return mixed


def _distinct(ids: np.ndarray) -> np.ndarray:
    """``np.unique(ids)`` by sorting: numpy 2's hash-based ``unique`` takes ~6 times longer on these sizes."""
    if len(ids) < 2:
        return ids
    ids = np.sort(ids)
    keep = np.empty(len(ids), dtype=bool)
    keep[0] = True
    np.not_equal(ids[1:], ids[:-1], out=keep[1:])
    return ids[keep]


def _char_grams(collapsed: str) -> list[np.ndarray]:
    """Per n from 2 to 5, the feature index of the n-gram starting at each position of the text."""
    lo, hi = CHAR_NGRAMS
    points = np.frombuffer(collapsed.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    rolling = points
    grams = []
    for n in range(2, hi + 1):
        if len(points) < n:
            break
        rolling = rolling[:-1] * _PRIME + points[n - 1 :]
        if n >= lo:
            grams.append((_mix(rolling + np.uint64(n)) % np.uint64(CHAR_FEATURES)).astype(np.int64))
    return grams


def _word_ids(hashes: np.ndarray) -> np.ndarray:
    if not len(hashes):
        return _EMPTY
    unigrams = _mix(hashes)
    bigrams = _mix(hashes[:-1] * _PRIME + hashes[1:] + _BIGRAM)
    return _distinct((np.concatenate([unigrams, bigrams]) % np.uint64(WORD_FEATURES)).astype(np.int64))


def _crc(words: list[str]) -> np.ndarray:
    return np.fromiter((zlib.crc32(w.encode()) for w in words), dtype=np.uint64, count=len(words))


def char_ids(text: str) -> np.ndarray:
    """Indices of the text's character 2- to 5-grams (whitespace runs count as one space)."""
    grams = _char_grams(_SPACES.sub(" ", text))
    return _distinct(np.concatenate(grams)) if grams else _EMPTY


def word_ids(text: str) -> np.ndarray:
    """Indices of the text's word unigrams and bigrams."""
    return _word_ids(_crc(_WORD.findall(text)))


class Ngrams:
    """One text's n-grams, hashed once; :meth:`ids` gives the features of the text or of any slice of it.

    ``ids(start, end)`` equals ``(char_ids(text[start:end]), word_ids(text[start:end]))``: whitespace runs
    collapse the same way (a run cut by the window still reads as one space) and a word cut by the
    window's edge is hashed as the part inside it.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        runs = [m.span() for m in _SPACES.finditer(text) if m.end() - m.start() > 1]
        kept = np.ones(len(text), dtype=np.int64)
        for start, end in runs:
            kept[start + 1 : end] = 0
        # position of each character of ``text`` in the collapsed text (a run's characters share its space)
        self.collapsed_at = np.cumsum(kept) - 1
        self.chars = _char_grams(_SPACES.sub(" ", text))
        spans = [m.span() for m in _WORD.finditer(text)]
        self.word_starts = np.array([s for s, _ in spans], dtype=np.int64)
        self.word_ends = np.array([e for _, e in spans], dtype=np.int64)
        self.word_hashes = _crc([text[s:e] for s, e in spans])
        self._whole: tuple[np.ndarray, np.ndarray] | None = None

    def ids(self, start: int = 0, end: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        end = len(self.text) if end is None else min(end, len(self.text))
        if start == 0 and end == len(self.text):  # the whole text: asked by each classifier, computed once
            if self._whole is None:
                self._whole = self._ids(0, end)
            return self._whole
        return self._ids(start, end)

    def _ids(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        if start >= end:
            return _EMPTY, _EMPTY
        a = int(self.collapsed_at[start])
        b = int(self.collapsed_at[end - 1]) + 1
        parts = [grams[a : b - n + 1] for n, grams in enumerate(self.chars, CHAR_NGRAMS[0]) if b - a >= n]
        chars = _distinct(np.concatenate(parts)) if parts else _EMPTY
        first = int(np.searchsorted(self.word_ends, start, side="right"))
        last = int(np.searchsorted(self.word_starts, end, side="left"))
        hashes = self.word_hashes[first:last]
        if first < last and (self.word_starts[first] < start or self.word_ends[last - 1] > end):
            hashes = hashes.copy()
            for i in {first, last - 1}:
                s, e = max(int(self.word_starts[i]), start), min(int(self.word_ends[i]), end)
                hashes[i - first] = zlib.crc32(self.text[s:e].encode())
        return chars, _word_ids(hashes)


def logit_of(
    ids: tuple[np.ndarray, np.ndarray], char_coef: np.ndarray, word_coef: np.ndarray, intercept: float
) -> float:
    """The linear model's logit for a text's feature indices (``char_ids``, ``word_ids``)."""
    total = intercept
    ci, wi = ids
    if len(ci):
        total += float(char_coef[ci].sum()) / len(ci) ** 0.5
    if len(wi):
        total += float(word_coef[wi].sum()) / len(wi) ** 0.5
    return total


def logit(text: str, char_coef: np.ndarray, word_coef: np.ndarray, intercept: float) -> float:
    """The linear model's logit for one (normalised) text."""
    return logit_of((char_ids(text), word_ids(text)), char_coef, word_coef, intercept)


def matrix(texts: list[str]) -> sp.csr_matrix:
    """The features of many texts as one CSR matrix: char block, then word block."""
    indptr = [0]
    indices: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for text in texts:
        for ids, offset in ((char_ids(text), 0), (word_ids(text), CHAR_FEATURES)):
            indices.append(ids + offset)
            values.append(np.full(len(ids), 1.0 / max(len(ids), 1) ** 0.5, dtype=np.float32))
        indptr.append(indptr[-1] + len(indices[-1]) + len(indices[-2]))
    return sp.csr_matrix(
        (np.concatenate(values), np.concatenate(indices), np.array(indptr)),
        shape=(len(texts), CHAR_FEATURES + WORD_FEATURES),
    )
