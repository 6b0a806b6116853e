"""A generated test set is a versioned dataset (content hash, lineage) that ``kb evaluate`` reads by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmdock.datasets.versions import Datasets
from llmdock.errors import ConfigError, NotFound
from llmdock.evaluate.results import get_run
from llmdock.rag import testset_store
from llmdock.rag.kbeval import Plan, evaluate_kb
from llmdock.rag.testset import TestsetGenerator
from llmdock.store.audit import Actor
from tests.unit.test_rag_kbeval import _runtime

ACTOR = Actor("pytest")


async def test_a_test_set_is_saved_as_a_version_with_its_lineage_and_evaluated_by_name(
    tmp_path: Path,
) -> None:
    rt = await _runtime(tmp_path)
    assert rt.store is not None
    gen = TestsetGenerator(rt.stage_env, rt.store, "kb", "writer", "writer", seed=3, kinds=("simple",))
    out = await gen.run(1)
    assert len(out.rows) == 1
    datasets = Datasets(rt.store, rt.settings.home)
    made = testset_store.lineage_of(out, "kb", gen.kb.version, "writer", "writer", 3)
    version, new = testset_store.save_testset(datasets, "kb-testset", out, ACTOR, made)
    assert (version.version, new, version.rows) == (1, True, 1)
    assert version.lineage == {
        "kind": "kb testset",
        "kb": "kb",
        "kb_version": gen.kb.version,
        "generator": "writer",
        "judge": "writer",
        "seed": 3,
        "kinds": ["simple"],
    }
    assert version.report["dropped"] == {"answer not in the text": 6}
    again, new = testset_store.save_testset(datasets, "kb-testset", out, ACTOR, made)
    assert (again.version, again.digest, new) == (1, version.digest, False)  # same rows: same version

    loaded = testset_store.load("kb-testset/1", datasets, tmp_path)
    assert [q.case.id for q in loaded.questions] == [out.rows[0]["id"]]
    assert loaded.label == f"dataset kb-testset/1 @{version.digest[:12]}"
    assert testset_store.lineage_warnings(loaded, "kb", gen.kb.version) == []
    assert "generated from version" in testset_store.lineage_warnings(loaded, "kb", gen.kb.version + 1)[0]
    assert "generated from knowledge base 'kb'" in testset_store.lineage_warnings(loaded, "other", 1)[0]

    plan = Plan("kb", "fake-kb", generate=False)
    report = await evaluate_kb(
        rt, rt.store, rt.plugins.metrics, plan, loaded.path, loaded.questions, "pytest", label=loaded.label
    )
    assert get_run(rt.store, report.run_id).suite_path == loaded.label
    await rt.close()


async def test_a_bad_row_of_a_dataset_version_is_named_by_version_and_line(tmp_path: Path) -> None:
    rt = await _runtime(tmp_path)
    assert rt.store is not None
    datasets = Datasets(rt.store, rt.settings.home)
    good = {"id": "a", "input": "What turns?", "expected": "Blades", "metadata": {"source_chunks": [1]}}
    bad = {"id": "b", "input": "Why?", "expected": "x", "metadata": {"source_chunks": "1"}}
    datasets.save("hand", [good, bad], ACTOR, lineage={}, report={})
    with pytest.raises(ConfigError) as err:
        testset_store.load("hand", datasets, tmp_path)
    assert err.value.one_line().startswith("hand/1:2: metadata.source_chunks: must be a list")
    with pytest.raises(NotFound) as missing:
        testset_store.load("nothing-here", datasets, tmp_path)
    assert "no dataset 'nothing-here'" in missing.value.message
    assert "nor is there a file 'nothing-here'" in missing.value.message
    await rt.close()
