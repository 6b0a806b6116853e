"""Clone detector for `make lint`: pylint's duplicate-code finder, run twice over src/.

1. As pylint ships it (``Symilar``): runs of six or more identical lines (comments, docstrings, imports and
   signatures ignored).
2. On the same files with every name, string and number replaced by a placeholder, so a copy whose names or
   values were changed ("same shape") is found too. pylint has no such mode and no maintained Python tool
   does (clonedigger, which did, is Python 2 only); the matching itself is still pylint's — this script only
   normalises the lines it is given and drops thin runs (field lists, call arguments one per line) that
   share punctuation rather than logic.

Migrations and the declarative error classes are excluded: they repeat a shape on purpose.
Exit status 1 when a pair is found, with ``file:start-end ~ file:start-end`` per pair.
"""

from __future__ import annotations

import ast
import io
import keyword
import sys
import tokenize
from collections.abc import Iterator
from pathlib import Path

import astroid
from pylint.checkers.symilar import Commonality, Symilar, hash_lineset

MIN_LINES = 5  # pylint reports runs of more than this many lines with code: six and up
EXCLUDED = ("store/migrations/", "llmdock/errors.py")
# Once names and values are placeholders, a field list or one-argument-per-line call is the same line again
# and again; a run counts as a copy only when it holds this many different lines.
MIN_DISTINCT = 5


def headers(source: str) -> set[int]:
    """Lines (1-based) of class and function headers with their decorators: declarations such as
    ``class X(Base, name=..., roles=...)`` or a CLI command's options, which share a shape by design."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            lines.update(range(start, node.body[0].lineno))
    return lines


def normalised(source: str) -> list[str]:
    """The file's lines with names, strings and numbers replaced; comments, docstrings and headers dropped."""
    lines = [""] * (source.count("\n") + 1)
    skipped = headers(source)
    previous = tokenize.NEWLINE
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        kind, text, (row, _), _, _ = tok
        if kind in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            previous = kind if kind in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT) else previous
            continue
        if kind == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            previous = kind  # a statement that is only a string: a docstring
            continue
        if kind == tokenize.NAME and not keyword.iskeyword(text) and text not in ("self", "cls"):
            text = "_"
        elif kind == tokenize.NUMBER:
            text = "0"
        elif kind == tokenize.STRING:
            text = "''"
        if row not in skipped:
            lines[row - 1] += text + " "
        previous = kind
    return [line.rstrip() + "\n" for line in lines]


def find(root: Path, shape: bool) -> list[tuple[str, int, int, str, int, int]]:
    sim = Symilar(
        min_lines=MIN_LINES,
        ignore_comments=True,
        ignore_docstrings=True,
        ignore_imports=True,
        ignore_signatures=True,
    )
    for path in sorted(root.rglob("*.py")):
        name = path.as_posix()
        if any(part in name for part in EXCLUDED):
            continue
        source = path.read_text(encoding="utf-8")
        lines = normalised(source) if shape else source.splitlines(keepends=True)
        sim.append_stream(name, io.StringIO("".join(lines)), tree=astroid.parse(source, path=name))
    pairs = []
    for common in _commonalities(sim):
        lset = common.fst_lset
        body = [
            s.text
            for s in lset.stripped_lines
            if common.fst_file_start <= s.line_number < common.fst_file_end
        ]
        if shape and len(set(body)) < MIN_DISTINCT:
            continue
        pairs.append(
            (
                common.fst_lset.name,
                common.fst_file_start + 1,
                common.fst_file_end,
                common.snd_lset.name,
                common.snd_file_start + 1,
                common.snd_file_end,
            )
        )
    return pairs


def _commonalities(sim: Symilar) -> Iterator[Commonality]:
    """pylint's pairwise finder (its public ``run`` only prints), plus each file against itself."""
    yield from sim._iter_sims()
    for lset in sim.linesets:
        hashes = hash_lineset(lset, MIN_LINES)
        for common in sim._find_common(lset, lset, hashes, hashes):
            if common.fst_file_end <= common.snd_file_start:  # each pair once, never a run with itself
                yield common


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "src")
    found = {p: "same lines" for p in find(root, shape=False)}
    for pair in find(root, shape=True):
        found.setdefault(pair, "same shape")
    for (a, a0, a1, b, b0, b1), kind in sorted(found.items()):
        print(f"{a}:{a0}-{a1} ~ {b}:{b0}-{b1} ({kind})")
    if found:
        print(
            f"{len(found)} copied runs of {MIN_LINES + 1}+ lines: fold them into one place", file=sys.stderr
        )
        return 1
    print(f"no copies of {MIN_LINES + 1}+ lines under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
