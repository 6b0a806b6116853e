"""What a PII analysis found, and when findings of a text analysed alone may stand in for a joined analysis.

The trace mask analyses a trace's strings in one call, joined by a blank line (``PiiEngine.redact_many``);
the ``pii`` guard has, by then, analysed the user's message alone with the same engine. :func:`reuse`
answers the joined analysis from the guard's findings plus an analysis of the other strings that can hold
PII, and only when that answer is provably what the joined analysis would give:

- every entity that would be looked for in the joined text has only separable recognizers
  (``privacy.separable``: no match crosses a line, no recognizer reads the others' results), so the joined
  analysis's raw findings are the union of each string's;
- no weak finding read its context words from before its own string (``PiiAnalysis.local``, noted by the
  context enhancer), so every score comes out as in the joined text;
- a string in which no entity can match (``PiiEngine.possible_entities`` is empty: "chat", "none") adds
  nothing and is left out.

Otherwise it returns None and the caller analyses the joined text as before. Results are byte-identical
either way (tests/unit/test_pii_reuse.py compares them on texts built to catch every way this could fail).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from llmdock.privacy.presidio_setup import PART_SEPARATOR


@dataclass(frozen=True, slots=True)
class PiiFinding:
    entity: str
    start: int
    end: int
    score: float


@dataclass(frozen=True, slots=True)
class PiiAnalysis:
    """One text analysed alone: its findings, and whether they may stand for that text's share of a joined
    analysis (``local``: no weak finding read context words from before the text)."""

    findings: tuple[PiiFinding, ...]
    local: bool


NOTHING = PiiAnalysis((), True)


class Analyser(Protocol):
    """The part of ``PiiEngine`` that reuse needs."""

    separable: frozenset[str]

    def possible_entities(self, text: str) -> list[str]: ...

    def analyse(self, text: str) -> PiiAnalysis: ...


def split(texts: Sequence[str], findings: Sequence[PiiFinding]) -> list[Sequence[PiiFinding]]:
    """Findings in ``texts`` joined by a blank line, given back to each text (offsets its own)."""
    out: list[Sequence[PiiFinding]] = []
    offset = 0
    for text in texts:
        end = offset + len(text)
        # A finding that crosses a separator is clipped to each side: redacting more is the safe way.
        out.append(
            [
                PiiFinding(f.entity, max(f.start, offset) - offset, min(f.end, end) - offset, f.score)
                for f in findings
                if f.start < end and f.end > offset
            ]
        )
        offset = end + len(PART_SEPARATOR)
    return out


def reuse(
    engine: Analyser, texts: Sequence[str], known: Mapping[str, PiiAnalysis]
) -> list[Sequence[PiiFinding]] | None:
    """What an analysis of ``texts`` joined would find in each, from ``known`` analyses of some of them
    alone and one analysis of the rest that can hold PII; None where that might differ (module docstring)."""
    reused = {i: known[t] for i, t in enumerate(texts) if t in known}
    if not reused or not all(a.local for a in reused.values()):
        return None
    if not engine.separable.issuperset(engine.possible_entities(PART_SEPARATOR.join(texts))):
        return None
    holds = {t: bool(engine.possible_entities(t)) for t in set(texts).difference(known)}  # "none" x 9: once
    rest = [i for i, t in enumerate(texts) if i not in reused and holds[t]]
    found: dict[int, Sequence[PiiFinding]] = {i: a.findings for i, a in reused.items()}
    if rest:
        analysis = engine.analyse(PART_SEPARATOR.join(texts[i] for i in rest))
        if not analysis.local:
            return None
        found.update(zip(rest, split([texts[i] for i in rest], analysis.findings), strict=True))
    return [found.get(i, ()) for i in range(len(texts))]
