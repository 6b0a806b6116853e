"""Drift between a reference window and the current one: KS on lengths and tokens, Fisher on rates, MMD with a
permutation p-value on embeddings; `llmdock monitor drift` prints the table and writes the HTML report."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from llmdock.config import load_settings
from llmdock.monitor.drift import Window, drift, mmd_test
from llmdock.store import Store
from llmdock.store.models import Trace

COOKING = ["How long should I {} the {} for a family dinner?", "What spice goes well with {} {}?"]
CODE = ["Why does my {} function raise a {} error in Python?", "How do I test a {} class with {} mocks?"]
WORDS = ["roast", "chicken", "bake", "salmon", "simmer", "lentils", "grill", "peppers", "braise", "beef"]


def sentences(templates: list[str], n: int, offset: int = 0) -> list[str]:
    return [
        templates[i % len(templates)].format(
            WORDS[(i + offset) % len(WORDS)], WORDS[(3 * i + 1) % len(WORDS)]
        )
        for i in range(n)
    ]


def test_mmd_tells_a_shifted_sample_from_the_same_distribution() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(60, 8))
    same = rng.normal(size=(60, 8))
    shifted = rng.normal(loc=0.8, size=(60, 8))
    assert mmd_test(ref, shifted, 200)[1] < 0.01
    assert mmd_test(ref, same, 200)[1] > 0.05


async def test_longer_prompts_and_more_errors_drift_the_rest_does_not() -> None:
    rng = np.random.default_rng(2)
    ref = Window(
        inputs=["x" * int(n) for n in rng.normal(200, 20, 150)],
        outputs=["y" * int(n) for n in rng.normal(300, 30, 150)],
        prompt_tokens=[int(n) for n in rng.normal(50, 5, 150)],
        completion_tokens=[int(n) for n in rng.normal(80, 8, 150)],
        errors=3,
    )
    cur = Window(
        inputs=["x" * int(n) for n in rng.normal(260, 20, 150)],
        outputs=["y" * int(n) for n in rng.normal(300, 30, 150)],
        prompt_tokens=[int(n) for n in rng.normal(65, 5, 150)],
        completion_tokens=[int(n) for n in rng.normal(80, 8, 150)],
        errors=25,
    )
    rows = {r.name: r for r in await drift(ref, cur, None)}
    assert rows["input length (chars)"].drifted
    assert rows["prompt tokens"].drifted
    assert rows["error rate"].drifted
    assert not rows["output length (chars)"].drifted
    assert not rows["completion tokens"].drifted
    assert not rows["guard-block rate"].drifted


def add(store: Store, model: str, texts: list[str], at: datetime) -> None:
    with store.session() as s, s.begin():
        for i, text in enumerate(texts):
            s.add(
                Trace(
                    id=f"{model[:4]}{int(at.timestamp())}{i:05d}",
                    created_at=at - timedelta(minutes=i),
                    operation="chat",
                    model=model,
                    status="ok",
                    duration_ms=10.0,
                    prompt_tokens=len(text.split()),
                    completion_tokens=5,
                    input={"messages": [{"role": "user", "content": text}]},
                    output="Here is what I would suggest.",
                    attributes={},
                    spans=[],
                )
            )


def run_drift(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmdock", "monitor", "drift", "--model", "m", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cfg.parent,
    )


def make_store(tmp_path: Path, current: list[str]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tmp_path / "llmdock.yaml"
    cfg.write_text(f"home: {tmp_path}\n")
    store = Store(load_settings(cfg).resolved_database_url())
    now = datetime.now(UTC)
    add(store, "m", sentences(COOKING, 80), now - timedelta(days=3))
    add(store, "m", current, now - timedelta(hours=1))
    store.close()
    return cfg


def test_the_cli_prints_the_table_and_writes_the_report(tmp_path: Path) -> None:
    cfg = make_store(
        tmp_path, [s + " Please answer in great detail with examples." for s in sentences(COOKING, 40)]
    )
    out = run_drift(cfg, "--no-embeddings", "--html", str(tmp_path / "r.html"))
    assert out.returncode == 0, out.stderr
    assert "input length" in out.stdout
    page = (tmp_path / "r.html").read_text()
    assert "Drift of m" in page
    assert page.count("<svg") >= 4  # lengths and tokens, reference beside current
    assert '<tr class="drift"><td>input length (chars)' in page
    bad = run_drift(cfg, "--reference", "a week")
    assert bad.returncode == 2
    assert "malformed duration" in bad.stderr


def drift_in_process(cfg: Path, model: str, html: Path) -> str:
    """``llmdock monitor drift`` run in this process."""
    from typer.testing import CliRunner

    from llmdock.cli.main import app

    args = ["monitor", "drift", "--model", model, "--config", str(cfg), "--html", str(html)]
    out = CliRunner().invoke(app, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return out.output


def verdict(table: str, statistic: str) -> str:
    return next(x for x in table.splitlines() if statistic in x).rstrip(" │").split()[-1]


@pytest.mark.model
def test_minilm_embeddings_see_a_change_of_topic_and_not_a_rephrasing(tmp_path: Path) -> None:
    # One home for both runs: the model is exported to ONNX once (into the home), which took most of the time
    # when each run had its own; and in this process, not two subprocesses.
    cfg = tmp_path / "llmdock.yaml"
    cfg.write_text(f"home: {tmp_path}\n")
    store = Store(load_settings(cfg).resolved_database_url())
    now = datetime.now(UTC)
    for model, current in (("topic", sentences(CODE, 24)), ("same", sentences(COOKING, 24, offset=5))):
        add(store, model, sentences(COOKING, 48), now - timedelta(days=3))
        add(store, model, current, now - timedelta(hours=1))
    store.close()
    out = drift_in_process(cfg, "topic", tmp_path / "topic.html")
    assert verdict(out, "inputs: meaning") == "yes", out
    assert verdict(out, "inputs: topic") == "yes", out  # the reference's k-means topics
    assert "<h2>inputs: topic</h2>" in (tmp_path / "topic.html").read_text()
    out = drift_in_process(cfg, "same", tmp_path / "same.html")
    assert verdict(out, "inputs: meaning") == "no", out
    assert verdict(out, "inputs: topic") == "no", out


ENGLISH = "Could you tell me how long to roast a chicken for a family dinner tonight?"
FRENCH = "Pouvez-vous me dire combien de temps il faut rôtir un poulet pour le dîner ce soir ?"


async def test_a_new_language_drifts_the_same_language_does_not() -> None:
    from llmdock.monitor.drift import Window

    ref = Window(inputs=[ENGLISH] * 60, outputs=["Roast it for about an hour and a half."] * 60)
    ref.prompt_tokens = ref.completion_tokens = [10] * 60
    mixed = Window(inputs=[ENGLISH] * 30 + [FRENCH] * 30, outputs=ref.outputs, prompt_tokens=[10] * 60)
    mixed.completion_tokens = [10] * 60
    rows = {r.name: r for r in await drift(ref, mixed, None)}
    assert rows["inputs: language"].drifted
    assert "fr 50%" in rows["inputs: language"].current
    assert not rows["outputs: language"].drifted  # one language on both sides: p = 1
    same = {r.name: r for r in await drift(ref, ref, None)}
    assert not same["inputs: language"].drifted


async def test_online_scores_drift_when_their_distribution_moves() -> None:
    rng = np.random.default_rng(3)
    base = {"prompt_tokens": [5] * 80, "completion_tokens": [5] * 80}
    ref = Window(
        scores={"helpful": list(rng.uniform(0.6, 1.0, 80)), "polite": list(rng.uniform(0, 1, 80))}, **base
    )
    cur = Window(
        scores={"helpful": list(rng.uniform(0.2, 0.6, 80)), "polite": list(rng.uniform(0, 1, 80))}, **base
    )
    rows = {r.name: r for r in await drift(ref, cur, None)}
    assert rows["online eval: helpful"].drifted
    assert not rows["online eval: polite"].drifted


async def test_a_stored_reference_is_read_back_whole_and_drift_uses_it(tmp_path: Path) -> None:
    from llmdock.monitor.drift_summary import Summary
    from llmdock.monitor.reference import get_reference, set_reference

    cfg = make_store(
        tmp_path, [s + " Please answer in great detail with examples." for s in sentences(COOKING, 40)]
    )
    store = Store(load_settings(cfg).resolved_database_url())
    now = datetime.now(UTC)

    async def embed(texts: list[str]) -> list[list[float]]:
        return [[float(len(t)), float(t.count(" ")), 1.0] for t in texts]

    made = await set_reference(store, "m", now - timedelta(days=7), now - timedelta(days=1), embed, "toy")
    assert made.summary.n == 80
    got = get_reference(store, "m")
    assert got is not None
    assert got.embedding_model == "toy"
    assert got.summary.to_json() == made.summary.to_json()
    assert set(got.summary.embeddings) == {"inputs", "outputs"}
    assert np.allclose(got.summary.embeddings["inputs"], made.summary.embeddings["inputs"])
    assert isinstance(got.summary, Summary)
    with store.session() as s, s.begin():  # the reference window's traces are gone: the stored summary is not
        s.query(Trace).filter(Trace.created_at < now - timedelta(days=1)).delete()
    store.close()
    out = run_drift(cfg, "--no-embeddings", "--html", str(tmp_path / "r.html"))
    assert out.returncode == 0, out.stderr
    assert "reference stored" in out.stdout
    assert "(80 traces)" in out.stdout
    assert "input length" in out.stdout
