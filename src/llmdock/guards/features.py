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
# both powers of two: an index is the hash's low bits (``& mask`` is ``% size``, without a division); indices
# fit in int32, which sorts twice as fast as int64
_CHAR_MASK, _WORD_MASK = np.uint64(CHAR_FEATURES - 1), np.uint64(WORD_FEATURES - 1)
_PRIME = np.uint64(0x100000001B3)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_S33 = np.uint64(33)
_BIGRAM = np.uint64(7)
_WORD = re.compile(r"\w+")
_WORD_BYTES = re.compile(rb"\w+")
_SPACES = re.compile(r"\s{2,}|[^\S ]")  # what "\s+" -> " " changes: runs, and lone tabs or line breaks
_EMPTY = np.zeros(0, dtype=np.int32)
_LENGTHS = np.arange(2, 6, dtype=np.uint64)[:, None]  # n of each row of _char_grams' block


def _mix(h: np.ndarray) -> np.ndarray:
    mixed: np.ndarray = h ^ (h >> _S33)  # a new array: the rest works in place
    mixed *= _M1
    mixed ^= mixed >> _S33
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
    """Per n from 2 to 5, the feature index of the n-gram starting at each position of the text.

    The rolling hashes of all n fill the rows of one block, mixed and masked together (a few numpy calls
    for the whole text rather than a few per n); a row's cells past its last n-gram are never read.
    """
    lo, hi = CHAR_NGRAMS
    points = np.frombuffer(collapsed.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    rows = min(hi, len(points)) - 1  # n from 2 to the smaller of 5 and the text's length
    if rows < 1:
        return []
    block = np.empty((rows, len(points) - 1), dtype=np.uint64)
    previous = points
    for r in range(rows):
        n = r + 2
        row = block[r, : len(points) - n + 1]
        np.multiply(previous[:-1], _PRIME, out=row)
        row += points[n - 1 :]
        previous = row
    block += _LENGTHS[:rows]
    ids = (_mix(block) & _CHAR_MASK).astype(np.int32)
    return [ids[n - 2, : len(points) - n + 1] for n in range(lo, rows + 2)]


def _word_ids(hashes: np.ndarray) -> np.ndarray:
    if not len(hashes):
        return _EMPTY
    unigrams = _mix(hashes)
    bigrams = _mix(hashes[:-1] * _PRIME + hashes[1:] + _BIGRAM)
    return _distinct((np.concatenate([unigrams, bigrams]) & _WORD_MASK).astype(np.int32))


def _crc(words: list[str]) -> np.ndarray:
    return np.fromiter(map(zlib.crc32, map(str.encode, words)), dtype=np.uint64, count=len(words))


def char_ids(text: str) -> np.ndarray:
    """Indices of the text's character 2- to 5-grams (whitespace runs count as one space)."""
    grams = _char_grams(_SPACES.sub(" ", text))
    return _distinct(np.concatenate(grams)) if grams else _EMPTY


def word_ids(text: str) -> np.ndarray:
    """Indices of the text's word unigrams and bigrams."""
    if text.isascii():  # the same words, split as bytes: no encoding word by word
        words = _WORD_BYTES.findall(text.encode())
        return _word_ids(np.fromiter(map(zlib.crc32, words), dtype=np.uint64, count=len(words)))
    return _word_ids(_crc(_WORD.findall(text)))


class Ngrams:
    """One text's n-grams, hashed once; :meth:`ids` gives the features of the text or of any slice of it.

    ``ids(start, end)`` equals ``(char_ids(text[start:end]), word_ids(text[start:end]))``: whitespace runs
    collapse the same way (a run cut by the window still reads as one space) and a word cut by the
    window's edge is hashed as the part inside it.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.chars = _char_grams(_SPACES.sub(" ", text))
        self._whole: tuple[np.ndarray, np.ndarray] | None = None
        self._positions: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def _located(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Where characters and words sit: asked only by windows (most texts are scored whole only).

        The position of each character of ``text`` in the collapsed text (a whitespace run's characters
        share its space), and each word's start, end and hash.
        """
        if self._positions is None:
            text = self.text
            kept = np.ones(len(text), dtype=np.int64)
            for m in _SPACES.finditer(text):
                kept[m.start() + 1 : m.end()] = 0
            spans = [m.span() for m in _WORD.finditer(text)]
            self._positions = (
                np.cumsum(kept) - 1,
                np.array([s for s, _ in spans], dtype=np.int64),
                np.array([e for _, e in spans], dtype=np.int64),
                _crc([text[s:e] for s, e in spans]),
            )
        return self._positions

    def ids(self, start: int = 0, end: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        end = len(self.text) if end is None else min(end, len(self.text))
        if start == 0 and end == len(self.text):  # the whole text: asked by each classifier, computed once
            if self._whole is None:
                chars = _distinct(np.concatenate(self.chars)) if self.chars else _EMPTY
                self._whole = chars, word_ids(self.text)
            return self._whole
        return self._ids(start, end)

    def _ids(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        if start >= end:
            return _EMPTY, _EMPTY
        collapsed_at, word_starts, word_ends, word_hashes = self._located()
        a = int(collapsed_at[start])
        b = int(collapsed_at[end - 1]) + 1
        parts = [grams[a : b - n + 1] for n, grams in enumerate(self.chars, CHAR_NGRAMS[0]) if b - a >= n]
        chars = _distinct(np.concatenate(parts)) if parts else _EMPTY
        first = int(np.searchsorted(word_ends, start, side="right"))
        last = int(np.searchsorted(word_starts, end, side="left"))
        hashes = word_hashes[first:last]
        if first < last and (word_starts[first] < start or word_ends[last - 1] > end):
            hashes = hashes.copy()
            for i in {first, last - 1}:
                s, e = max(int(word_starts[i]), start), min(int(word_ends[i]), end)
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


class Stacked:
    """Several linear models over the same features, evaluated with one gather per block.

    The weights sit side by side (a row per feature), so a text's features fetch every model's weights with
    one ``take`` of adjacent memory instead of one scattered gather per model. Each model's weights are
    then summed as one contiguous row, in the order :func:`logit_of` sums them: the logits are the same
    floats, not approximately.
    """

    def __init__(self, models: list[tuple[np.ndarray, np.ndarray, float]]) -> None:
        self.char = np.stack([c for c, _, _ in models], axis=1)
        self.word = np.stack([w for _, w, _ in models], axis=1)
        self.intercepts = [i for _, _, i in models]

    def logits(self, ids: tuple[np.ndarray, np.ndarray]) -> list[float]:
        """Each model's :func:`logit_of` for a text's feature indices."""
        totals = list(self.intercepts)
        for block, weights in zip(ids, (self.char, self.word), strict=True):
            if len(block):
                sums = np.ascontiguousarray(weights.take(block, axis=0).T).sum(axis=1)
                norm = len(block) ** 0.5
                totals = [t + float(x) / norm for t, x in zip(totals, sums, strict=True)]
        return totals


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
