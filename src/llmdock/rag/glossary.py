"""Entity linking: a knowledge base's glossary terms recognised in a query, their definitions added to the
context. Terms match whole words, case-insensitively, longest first (so "JSON decoder" wins over "JSON")."""

from __future__ import annotations

import re
from pathlib import Path

from llmdock.config.yaml_source import load_yaml_file
from llmdock.errors import InvalidRequest

TERM_MAX = 200


def read_glossary(path: Path) -> dict[str, str]:
    """A YAML mapping of term → definition; a bad entry raises ``file:line: term: message``."""
    data, where = load_yaml_file(path)
    if not isinstance(data, dict) or not data:
        raise InvalidRequest("a glossary is a YAML mapping of term: definition", where=str(path))
    out: dict[str, str] = {}
    for term, definition in data.items():
        term_s = str(term).strip()
        if not term_s or len(term_s) > TERM_MAX:
            raise InvalidRequest(f"a term is 1 to {TERM_MAX} characters", where=where((term,)))
        if not isinstance(definition, str) or not definition.strip():
            raise InvalidRequest("the definition must be non-empty text", where=where((term,)))
        out[term_s] = definition.strip()
    return out


def linked(glossary: dict[str, str], query: str) -> dict[str, str]:
    """The glossary entries whose term occurs in ``query`` (whole words, any case), in query order."""
    found: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    for term in sorted(glossary, key=len, reverse=True):
        for m in re.finditer(rf"(?<!\w){re.escape(term)}(?!\w)", query, flags=re.IGNORECASE):
            if not any(s < m.end() and m.start() < e for s, e in taken):
                taken.append((m.start(), m.end()))
                found.append((m.start(), term))
                break
    return {term: glossary[term] for _, term in sorted(found)}
