"""What a Ray worker of ``llmdock finetune search --executor ray`` holds: the search's inputs (its own base
model, tokenizer and encoded rows) and the store, where the study lives. Each call runs one trial: the worker
loads the study from the store's journal, optuna's sampler asks for the trial's values knowing every trial any
worker has stored, the trial trains, reports its validation losses to the same journal (so the median pruner
compares it with every worker's trials) and ends there. Workers share nothing but the store: it must be one
they reach (the SQLite file on a one-machine cluster; PostgreSQL across machines).
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

from llmdock.finetune.config import FinetuneConfig
from llmdock.finetune.search import SearchInputs, objective, open_study, search_inputs
from llmdock.store import Store


class SearchWorker:
    def __init__(self, config: FinetuneConfig, inputs: SearchInputs, store: Store, workdir: Path) -> None:
        self.config = config
        self.inputs = inputs
        self.store = store
        self.workdir = workdir
        self.name = f"{socket.gethostname()[:40]}:{os.getpid()}"

    @classmethod
    async def start(cls, config_path: str, settings: Any) -> SearchWorker:
        """The worker of a config file: its rows, its base (loaded on the worker), the settings' store."""
        config, inputs, workdir = await asyncio.to_thread(search_inputs, Path(config_path), settings)
        return cls(config, inputs, Store(settings.resolved_database_url()), workdir)

    async def trial(self, seed_offset: int) -> int:
        """Run one trial of the study (its sampler seeded apart by ``seed_offset``); its number."""
        return await asyncio.to_thread(self._trial, seed_offset)

    def _trial(self, seed_offset: int) -> int:
        study = open_study(self.config, self.store, seed_offset=seed_offset)
        ran: list[int] = []

        def one(trial: Any) -> float:
            ran.append(trial.number)
            trial.set_user_attr("worker", self.name)
            return objective(trial, self.config, self.inputs, self.workdir)

        study.optimize(one, n_trials=1)
        return ran[0]

    async def close(self) -> None:
        self.store.close()
