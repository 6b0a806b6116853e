"""``llmdock finetune search``: optuna searches a run's hyperparameters on the validation loss, pruning poor
trials early, the study kept in llmdock's store so that running it again continues it.

Each trial trains from the base (no checkpoints, no export) with the values optuna suggests for the config's
``search.space``; every ``search.eval_every`` steps the loss on the validation rows is reported, and optuna's
median pruner stops a trial doing worse than the median of earlier trials at that step (after
``search.startup_trials`` whole ones). A trial's value is its last validation loss.

The study lives in the store through optuna's journal storage (:class:`StoreJournal`, the table
``finetune_search_logs``): ``--trials N`` asks for N finished trials in all, so a search killed at any moment
continues with the trials it still lacks when run again (a trial that was running is marked failed and
retried). The best trial's values are written back as a runnable config beside the original
(``NAME.best.yaml``) for ``llmdock finetune run``.

Trials run here one after the other (:func:`in_process`), or on Ray workers sharing the study through the
store (``--executor ray``: ``llmdock.jobs.ray_search`` and :mod:`llmdock.finetune.search_worker`).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from optuna.storages.journal import BaseJournalBackend
from pydantic import ValidationError as PydanticValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select, text
from transformers import TrainerCallback

from llmdock.errors import ConfigError
from llmdock.finetune.config import FinetuneConfig
from llmdock.finetune.search_config import apply, suggest
from llmdock.store import Store
from llmdock.store.finetune_rows import FinetuneSearchLog

Example = dict[str, list[int]]


class StoreJournal(BaseJournalBackend):
    """optuna's journal, one row per operation in ``finetune_search_logs``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        query = select(FinetuneSearchLog.log).order_by(FinetuneSearchLog.id).offset(log_number_from)
        with self.store.session() as s:
            return [json.loads(text) for text in s.scalars(query)]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Appended in one transaction. Several processes append to one study (Ray workers), and every
        reader must see the log in one order with no gap: on PostgreSQL, where ids are drawn before commit
        and commits may land out of id order, appends take turns on the table (SQLite's writes always do)."""
        with self.store.session() as s, s.begin():
            if s.get_bind().dialect.name == "postgresql":
                s.execute(text(f"LOCK TABLE {FinetuneSearchLog.__tablename__} IN EXCLUSIVE MODE"))
            s.add_all([FinetuneSearchLog(log=json.dumps(entry)) for entry in logs])


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    study: str
    trials: list[tuple[int, str, float | None]]  # number, state, value
    best_params: dict[str, Any]
    best_value: float
    best_file: Path


@dataclass(frozen=True, slots=True)
class SearchInputs:
    """What every trial shares: the config's data as written, the tokenizer, the examples' sources."""

    data: dict[str, Any]
    tokenizer: Any
    train: Callable[[FinetuneConfig], list[Example]]  # the trial's training examples (its max_length)
    validation: Callable[[FinetuneConfig], list[Example]]
    make_model: Callable[[], Any]  # a fresh base model for each trial


def study_name(config: FinetuneConfig) -> str:
    assert config.search is not None
    return config.search.study or f"finetune:{config.name}"


TrialRunner = Callable[[Any, int, Callable[[], None]], None]
"""Runs ``n`` more trials of the study, calling ``tick`` after each: :func:`in_process`, or the Ray
executor's (``llmdock.jobs.ray_search``: workers sharing the study through the store)."""


def open_study(
    config: FinetuneConfig, store: Store, *, seed_offset: int = 0, restart: bool = False, owner: bool = False
) -> Any:
    """The config's study in the store (created when missing) with its sampler and pruner. The ``owner`` (the
    search's own process, not a worker) marks failed a trial a killed search left ``running``: it is retried.
    ``seed_offset`` sets apart the samplers of workers sharing the study."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.trial import TrialState

    assert config.search is not None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar says what optuna would log
    storage = JournalStorage(StoreJournal(store))
    name = study_name(config)
    if restart and name in optuna.get_all_study_names(storage):
        optuna.delete_study(study_name=name, storage=storage)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=config.search.seed + seed_offset),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=config.search.startup_trials),
    )
    if owner:
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            storage.set_trial_state_values(stale._trial_id, state=TrialState.FAIL)  # killed while it ran
    return study


def in_process(config: FinetuneConfig, inputs: SearchInputs, workdir: Path) -> TrialRunner:
    """The trials one after the other in this process."""

    def run(study: Any, n: int, tick: Callable[[], None]) -> None:
        study.optimize(
            lambda trial: objective(trial, config, inputs, workdir),
            n_trials=n,
            callbacks=[lambda _study, _trial: tick()],
        )

    return run


def search(
    config: FinetuneConfig,
    data: dict[str, Any],
    store: Store,
    trials: int,
    *,
    best_file: Path,
    run_trials: TrialRunner,
    restart: bool = False,
) -> SearchOutcome:
    """Run the trials the study still lacks (of ``trials`` finished ones) and write the best config (``data``,
    the config file as written, with the best trial's values)."""
    from optuna.trial import TrialState

    study = open_study(config, store, restart=restart, owner=True)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    with _TrialsBar(trials, done) as bar:
        if trials > done:
            run_trials(study, trials - done, lambda: bar.update(study))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(f"study {study.study_name!r} has no complete trial: every one was pruned or failed")
    best = study.best_trial
    _write_best(data, best.params, best_file)
    return SearchOutcome(
        study=study.study_name,
        trials=[(t.number, t.state.name.lower(), t.value) for t in study.get_trials(deepcopy=False)],
        best_params=dict(best.params),
        best_value=float(best.value or 0.0),
        best_file=best_file,
    )


def objective(trial: Any, config: FinetuneConfig, inputs: SearchInputs, workdir: Path) -> float:
    """One trial: train from the base with optuna's suggestions, reporting validation losses (pruning)."""
    import optuna

    from llmdock.finetune.train import train

    assert config.search is not None
    params = suggest(trial, config.search.space)
    data = apply(inputs.data, params)
    steps = data.get("training", {}).get("max_steps", config.training.max_steps)
    data.setdefault("training", {})["checkpoint_every"] = steps  # a trial writes no checkpoint
    try:
        trial_config = FinetuneConfig.model_validate(data)
    except PydanticValidationError as exc:  # a combination the config refuses: not worth a trial
        trial.set_user_attr("refused", exc.errors()[0]["msg"])
        raise optuna.TrialPruned() from None
    prune = _Pruning(trial)
    with tempfile.TemporaryDirectory(dir=workdir, prefix=f".trial-{trial.number}-") as tmp:
        result = train(
            trial_config,
            inputs.make_model(),
            inputs.tokenizer,
            inputs.train(trial_config),
            Path(tmp),
            eval_examples=inputs.validation(trial_config),
            callbacks=[prune],
        )
    if prune.pruned:
        raise optuna.TrialPruned()
    if not result.eval_losses:
        raise ConfigError("a trial ended without a validation loss")
    return result.eval_losses[-1][1]


class _Pruning(TrainerCallback):
    """Reports each validation loss to optuna; stops the trial when optuna says prune."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial
        self.pruned = False

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kw: Any
    ) -> None:
        if metrics and "eval_loss" in metrics:
            self.trial.report(metrics["eval_loss"], state.global_step)
            if self.trial.should_prune():
                self.pruned = True
                control.should_training_stop = True


class _TrialsBar:
    """A rich bar over the study's finished trials with the best validation loss so far."""

    def __init__(self, total: int, done: int) -> None:
        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("search"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("best validation loss {task.fields[best]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self.task = self.progress.add_task("trials", total=total, completed=done, best="-")

    def __enter__(self) -> _TrialsBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, study: Any) -> None:
        from optuna.trial import TrialState

        best = "-"
        if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            best = f"{study.best_value:.4f} (trial {study.best_trial.number})"
        self.progress.update(self.task, advance=1, best=best)


def _write_best(data: dict[str, Any], params: dict[str, Any], path: Path) -> None:
    best = {k: v for k, v in apply(data, params).items() if k != "search"}
    training = best.get("training", {})
    if "checkpoint_every" in training and "max_steps" in training:
        training["checkpoint_every"] = min(training["checkpoint_every"], training["max_steps"])
    header = f"# the best trial's hyperparameters (llmdock finetune search): {json.dumps(params)}\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(header + yaml.safe_dump(best, sort_keys=False))
    tmp.replace(path)


def search_inputs(config_path: Path, settings: Any) -> tuple[FinetuneConfig, SearchInputs, Path]:
    """What the trials of a config file share: its rows checked and encoded, the base loaded (dequantised once,
    cached), and the directory trials train in. A Ray worker makes its own."""
    from llmdock.config.yaml_source import load_yaml_file
    from llmdock.finetune import mixing
    from llmdock.finetune.base import load_for_training, prepare_base

    config, where = checked_config(config_path, settings)
    assert config.search is not None
    here = Path(config_path).parent
    train_sources = mixing.load_sources(
        config, settings, split=config.train_split, relative_to=here, where=where
    )
    val_sources = mixing.load_sources(
        config, settings, split=config.search.validation_split, relative_to=here, where=where
    )
    base = prepare_base(config.base_model, settings, where=where(("base_model",)))
    _model, tokenizer = load_for_training(base)

    def validation(trial_config: FinetuneConfig) -> list[Example]:
        length = trial_config.training.max_length
        return [e for s in val_sources for e in mixing.encode_source(tokenizer, s, length)]

    inputs = SearchInputs(
        data=load_yaml_file(Path(config_path))[0],
        tokenizer=tokenizer,
        train=lambda trial_config: mixing.examples(trial_config, tokenizer, train_sources),
        validation=validation,
        make_model=lambda: load_for_training(base)[0],
    )
    workdir = Path(settings.home) / "tmp"
    workdir.mkdir(parents=True, exist_ok=True)
    return config, inputs, workdir


def checked_config(config_path: Path, settings: Any) -> tuple[FinetuneConfig, Any]:
    from llmdock.finetune.config import load_config

    config, where = load_config(config_path, settings)
    if config.search is None:
        raise ConfigError("no search: section (search.space names what to search)", where=str(config_path))
    return config, where


def run_search(
    config_path: Path,
    settings: Any,
    trials: int,
    *,
    restart: bool = False,
    run_trials: TrialRunner | None = None,
) -> SearchOutcome:
    """The search of a config file on its real base, in this process or by ``run_trials`` (the Ray
    executor's: the base is then loaded by each worker, not here)."""
    from llmdock.config.yaml_source import load_yaml_file

    config, _ = checked_config(config_path, settings)
    if run_trials is None:
        config, inputs, workdir = search_inputs(config_path, settings)
        run_trials = in_process(config, inputs, workdir)
    store = Store(settings.resolved_database_url())
    try:
        best_file = Path(config_path).with_name(f"{Path(config_path).stem}.best.yaml")
        data = load_yaml_file(Path(config_path))[0]
        return search(
            config, data, store, trials, best_file=best_file, run_trials=run_trials, restart=restart
        )
    finally:
        store.close()
