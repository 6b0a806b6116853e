"""What a run trains on and how, beyond one chat dataset: the config fields of the training strategies.

- ``task: pretrain`` is domain adaptation, continued pre-training on raw text: the loss on every token (a
  ``.txt`` file, paragraphs apart by a blank line; a JSONL file of ``{"text": …}``; or a dataset version,
  each row's messages as one text).
- ``mixture:`` multi-task training: several datasets, each with its weight and its own task; the examples of
  a run are drawn from them in proportion to the weights.
- ``replay: {dataset, share}`` continual learning: new data (say, a dataset made ``--from-feedback``) trained
  with ``share`` of each run's examples drawn from earlier data, to limit forgetting.
- ``init_adapter:`` transfer: start from an existing LoRA adapter (a registered one, ``models:/NAME@alias``,
  or a directory) instead of a fresh one; its rank and targets are the adapter's own.
- ``method: full`` trains every weight (no adapter) where the model is small enough.

Each mistake is ``file:line: field: message`` (:func:`check_strategy`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmdock.errors import ConfigError

if TYPE_CHECKING:
    from llmdock.finetune.config import FinetuneConfig

Task = Literal["sft", "pretrain"]
Where = Callable[[tuple[str | int, ...]], str]
FULL_MAX_PARAMS = 400_000_000  # full fine-tuning in float32 with AdamW: ~16 bytes a weight, 6.4 GB here


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MixtureItem(_Strict):
    dataset: str = Field(min_length=1, description="a dataset version or a file, as `dataset:` takes")
    weight: float = Field(default=1.0, gt=0.0, description="its share of the examples is weight / sum")
    task: Task | None = Field(default=None, description="sft or pretrain [the run's task]")


class ReplaySettings(_Strict):
    dataset: str = Field(min_length=1, description="the earlier data replayed beside the new")
    share: float = Field(default=0.2, gt=0.0, lt=1.0, description="the share of examples drawn from it")
    task: Task | None = None


def check_strategy(config: FinetuneConfig, where: Where, given: set[str]) -> None:
    """The strategy fields fit together; ``given`` are the top-level keys the file sets."""
    if bool(config.dataset) == bool(config.mixture):
        raise ConfigError(
            "name the training data once: either dataset: or mixture:",
            where=where(("mixture",) if config.mixture else ("dataset",)),
        )
    if config.replay is not None and config.mixture:
        raise ConfigError(
            "replay: adds earlier data to one dataset; with mixture:, give the earlier data a weight instead",
            where=where(("replay",)),
        )
    if config.method == "full":
        for key in ("lora", "init_adapter"):
            if key in given:
                raise ConfigError(
                    f"method: full trains every weight, {key}: is for LoRA", where=where((key,))
                )
    if config.method == "full" and config.export.lora_adapter:
        raise ConfigError("method: full makes no adapter to export", where=where(("export", "lora_adapter")))
    if config.init_adapter and "lora" in given:
        raise ConfigError(
            "init_adapter: continues an adapter with its own rank and targets; remove lora:",
            where=where(("lora",)),
        )
    if (
        config.search is not None
        and config.method == "full"
        and any(key.startswith("lora.") for key in config.search.space)
    ):
        raise ConfigError("method: full has no LoRA settings to search", where=where(("search", "space")))


def sources(config: FinetuneConfig) -> list[tuple[str, float, Task]]:
    """(dataset, weight, task) of every source of examples."""
    if config.mixture:
        return [(m.dataset, m.weight, m.task or config.task) for m in config.mixture]
    if config.replay is not None:
        replay = config.replay
        return [
            (config.dataset, 1.0 - replay.share, config.task),
            (replay.dataset, replay.share, replay.task or config.task),
        ]
    return [(config.dataset, 1.0, config.task)]
