"""What a pattern requires of any text it matches: the guards skip patterns a text cannot match."""

from __future__ import annotations

import re

import pytest

from llmdock.guards.base import GuardText
from llmdock.guards.detectors.injection import HEURISTICS, InjectionDetector, InjectionParams
from llmdock.guards.regexes import required_groups, required_literals, required_run
from llmdock.guards.training import data_path, load_rows
from tests.unit.test_guards_detectors import ENV


@pytest.mark.parametrize(
    ("pattern", "literals"),
    [
        (r"\bignore\s+(?:all\s+)?(?:previous|prior)\s+rules", ("ignore",)),
        (r"\b(?:reveal|show)\s+the\s+(?:system|hidden)\s+prompt", ("system", "hidden")),
        (r"(?:^|\W)(?:new|real)\s+instructions?\s*:", ("instruction",)),
        (r"cat|dog", ("cat", "dog")),
        (r"(?:a|)b*", None),  # an empty branch and an optional repeat: nothing required
        (r"(?:a|)b+", ("b",)),  # a repeat of at least one
        (r"(?i)ignore", None),  # case-insensitive literals do not appear verbatim
        (r"x(?i:ignore)", ("x",)),
    ],
)
def test_required_literals_are_read_off_the_pattern(pattern: str, literals: tuple[str, ...] | None) -> None:
    assert required_literals(re.compile(pattern)) == literals


def test_every_group_is_required_and_each_alternative_contributes() -> None:
    pattern = re.compile(r"\b(?:ignore|drop)\s+(?:all\s+)?(?:rules|instructions?)|<\|im_start\|>")
    assert required_groups(pattern) == [("rules", "instruction", "<|im_start|>")]  # each branch's best
    groups = required_groups(re.compile(r"\b(?:ignore|drop)\s+(?:all\s+)?(?:rules|instructions?)"))
    assert groups == [("ignore", "drop"), ("rules", "instruction")]


@pytest.mark.parametrize(
    ("pattern", "run"),
    [
        (r"ghp_[A-Za-z0-9_]{36}", 36),
        (r"(?:key|token)=([a-f0-9]{48})", 48),
        (r"a(?:[a-z]{30})?", 0),  # optional: not required
        (r"[a-z/]{40}", 0),  # '/' is not a word character
        (r"[^\s]{40}", 0),
    ],
)
def test_required_run_is_read_off_the_pattern(pattern: str, run: int) -> None:
    assert required_run(re.compile(pattern)) == run


async def test_skipping_heuristics_that_cannot_match_gives_the_same_verdicts() -> None:
    fast = InjectionDetector(InjectionParams(), ENV)
    slow = InjectionDetector(InjectionParams(), ENV)
    slow.needles = [[] for _ in HEURISTICS]
    assert all(fast.needles)
    assert sum(len(groups) > 1 for groups in fast.needles) >= len(HEURISTICS) - 2  # every group must be there
    fired = 0
    for row in load_rows(data_path(), "injection")[:2500]:
        mine = await fast.detect(GuardText(row["text"], "user", "input"))
        every = await slow.detect(GuardText(row["text"], "user", "input"))
        assert (mine.score, mine.layer) == (every.score, every.layer), row["text"][:80]
        fired += every.layer.startswith("heuristic")
    assert fired >= 20  # the rows exercise the heuristics
