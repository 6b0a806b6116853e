"""``llmdock finetune search``: optuna over a config's search space on the validation loss, pruning a poor
trial, the study kept in the store (optuna's journal in ``finetune_search_logs``) so a second run continues
it, and the best trial written back as a runnable config. A tiny random Llama stands in for the base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llmdock.errors import ConfigError
from llmdock.finetune.config import FinetuneConfig, load_config
from llmdock.finetune.data import encode_all
from llmdock.finetune.search import SearchInputs, StoreJournal, in_process, search, study_name
from llmdock.finetune.search_worker import SearchWorker
from llmdock.store import Store
from tests.unit.test_finetune_config import _settings
from tests.unit.test_finetune_data import (  # noqa: F401 (a fixture)
    ROW,
    _tiny_model,
    tiny_tokenizer,
    tokenizer,
)

DATA: dict[str, Any] = {
    "name": "tiny",
    "base_model": "smollm2",
    "dataset": "x.jsonl",
    "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
    "training": {"max_steps": 4, "batch_size": 1, "checkpoint_every": 4, "learning_rate": 0.01},
    "search": {
        "eval_every": 2,
        "startup_trials": 1,
        "space": {"training.learning_rate": {"low": 1.0e-9, "high": 0.1, "log": True}},
    },
}


def _inputs(tok: Any) -> SearchInputs:
    rows = [ROW, {"messages": ROW["messages"][1:3]}]
    return SearchInputs(
        data=DATA,
        tokenizer=tok,
        train=lambda c: encode_all(tok, rows, c.training.max_length),
        validation=lambda c: encode_all(tok, rows[:1], c.training.max_length),
        make_model=lambda: _tiny_model(tok),
    )


async def tiny_search_worker(store_url: str, workdir: str) -> SearchWorker:
    """What a Ray worker holds in tests/integration/test_ray_executor.py: the search of DATA on the tiny model."""
    tok = tiny_tokenizer()
    return SearchWorker(FinetuneConfig.model_validate(DATA), _inputs(tok), Store(store_url), Path(workdir))


def test_a_poor_trial_is_pruned_and_a_second_run_continues_the_stored_study(
    tokenizer: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    import optuna
    from optuna.storages import JournalStorage

    config = FinetuneConfig.model_validate(DATA)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        first = optuna.create_study(
            study_name=study_name(config), storage=JournalStorage(StoreJournal(store)), direction="minimize"
        )
        first.enqueue_trial({"training.learning_rate": 0.05})  # learns: the pruner's yardstick
        first.enqueue_trial({"training.learning_rate": 1.0e-9})  # learns nothing: pruned at step 2
        best_file = tmp_path / "tiny.best.yaml"
        here = in_process(config, _inputs(tokenizer), tmp_path)
        outcome = search(config, DATA, store, 2, best_file=best_file, run_trials=here)
        assert [(n, s) for n, s, _ in outcome.trials] == [(0, "complete"), (1, "pruned")]
        assert outcome.best_params == {"training.learning_rate": 0.05}
        again = search(config, DATA, store, 3, best_file=best_file, run_trials=here)
    finally:
        store.close()
    assert [n for n, _, _ in again.trials] == [0, 1, 2]
    assert again.trials[2][1] in ("complete", "pruned")
    best = yaml.safe_load((tmp_path / "tiny.best.yaml").read_text())
    assert "search" not in best
    assert best["training"]["learning_rate"] == again.best_params["training.learning_rate"]
    assert FinetuneConfig.model_validate(best).training.learning_rate == best["training"]["learning_rate"]


def test_the_journal_in_the_store_is_read_back_in_order_from_any_position(db_url: str) -> None:
    store = Store(db_url)  # on PostgreSQL too, where appends lock the table
    try:
        journal = StoreJournal(store)
        journal.append_logs([{"op": 0, "n": 1}, {"op": 1, "n": 2}])
        journal.append_logs([{"op": 2, "n": 3}])
        assert [e["n"] for e in journal.read_logs(0)] == [1, 2, 3]
        assert [e["n"] for e in journal.read_logs(2)] == [3]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("search_text", "field", "message"),
    [
        ("  space: {training.lerning_rate: {low: 0.1, high: 1}}\n", "search.space", "cannot search"),
        ("  space: {lora.r: {low: 8, high: 4}}\n", "search.space.lora.r", "must be below high"),
        ("  space: {training.learning_rate: {low: 0, high: 1, log: true}}\n", "search.space", "low > 0"),
    ],
)
def test_a_bad_search_space_is_named_by_line_and_field(
    tmp_path: Path, search_text: str, field: str, message: str
) -> None:
    path = tmp_path / "finetune.yaml"
    path.write_text("name: tuned\nbase_model: smollm2\ndataset: chat.jsonl\nsearch:\n" + search_text)
    with pytest.raises(ConfigError) as err:
        load_config(path, _settings(tmp_path))
    assert err.value.one_line().startswith(f"{path}:5: {field}"), err.value.one_line()
    assert message in err.value.message
