"""LoRA training with peft and transformers' ``Trainer``: checkpoints every N steps, resume after a kill.

The Trainer writes ``checkpoint-<step>/`` (adapter, optimizer, scheduler, RNG states) every
``training.checkpoint_every`` steps and writes ``trainer_state.json`` into it last, so a checkpoint without
that file was cut short by a kill: it is removed before resuming from the newest complete one. A run killed
at any moment therefore loses at most one interval. Out of memory is caught: the checkpoints stay, and the
message names the settings to lower.
"""

from __future__ import annotations

import json
import resource
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from transformers import TrainerCallback

from llmdock.errors import LlmdockError
from llmdock.finetune.config import FinetuneConfig

STATE = "trainer_state.json"


class TrainingFailed(LlmdockError):
    status = 500
    code = "training_failed"
    type = "server_error"


@dataclass
class TrainingResult:
    adapter_dir: Path
    steps: int
    resumed_from: int
    seconds: float
    tokens_per_s: float
    losses: list[tuple[int, float]] = field(default_factory=list)
    peak_rss: int = 0
    method: str = "lora"
    eval_losses: list[tuple[int, float]] = field(default_factory=list)


class RichProgress(TrainerCallback):
    """A rich bar over optimizer steps with the last loss and the tokens trained on per second."""

    def __init__(self, total_steps: int) -> None:
        console = Console(stderr=True)
        self.bar = Progress(
            TextColumn("training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[tps]} tok/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self.task = self.bar.add_task("train", total=total_steps, loss="-", tps="-")
        self.started = 0.0
        self.first_tokens = 0
        self.tokens_per_s = 0.0
        self.peak_rss = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.started = time.monotonic()
        self.first_tokens = int(state.num_input_tokens_seen)
        self.bar.start()
        self.bar.update(self.task, completed=state.global_step)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        if logs and "loss" in logs:
            self.bar.update(self.task, loss=f"{logs['loss']:.3f}")

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        elapsed = time.monotonic() - self.started
        if elapsed > 0:
            self.tokens_per_s = (int(state.num_input_tokens_seen) - self.first_tokens) / elapsed
        self.peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        self.bar.update(self.task, completed=state.global_step, tps=f"{self.tokens_per_s:.0f}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.bar.stop()


def last_complete_checkpoint(checkpoints: Path) -> Path | None:
    """The newest checkpoint whose state was written; torn ones (killed while saving) are removed."""
    if not checkpoints.exists():
        return None
    found = sorted(
        (p for p in checkpoints.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    for path in reversed(found):
        try:
            json.loads((path / STATE).read_text())
            return path
        except (OSError, ValueError):
            shutil.rmtree(path, ignore_errors=True)
    return None


def train(
    config: FinetuneConfig,
    model: Any,
    tokenizer: Any,
    examples: list[dict[str, list[int]]],
    run_dir: Path,
    *,
    init_adapter: Path | None = None,
    eval_examples: list[dict[str, list[int]]] | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainingResult:
    """Train on ``examples`` (a LoRA adapter, or every weight with ``method: full``); resumes from the run's
    newest complete checkpoint if any. With ``eval_examples`` the validation loss is computed every
    ``search.eval_every`` steps and no checkpoint is written (a search trial)."""
    import torch
    from transformers import DataCollatorForSeq2Seq, PrinterCallback, Trainer

    trained = trainable(config, model, init_adapter)
    checkpoints = run_dir / "checkpoints"
    resume = None if eval_examples is not None else last_complete_checkpoint(checkpoints)
    progress = RichProgress(config.training.max_steps)
    trainer = Trainer(
        model=trained,
        args=_arguments(config, checkpoints, evaluate=eval_examples is not None),
        train_dataset=examples,
        eval_dataset=eval_examples,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=[progress, *callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # the rich bar shows the loss; no dict per step on stdout
    started, threads = time.monotonic(), torch.get_num_threads()
    if config.training.threads:
        torch.set_num_threads(config.training.threads)
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except (torch.OutOfMemoryError, MemoryError) as exc:
        raise TrainingFailed(
            f"out of memory after step {trainer.state.global_step} ({exc.__class__.__name__}); the checkpoints "
            f"in {checkpoints} are kept: lower training.batch_size (now {config.training.batch_size}, raise "
            f"grad_accum to keep the effective batch) or training.max_length (now {config.training.max_length}), "
            "then run again with --resume"
        ) from None
    finally:
        torch.set_num_threads(threads)  # the process goes on as it was (a pipeline's later steps)
    out = run_dir / ("model" if config.method == "full" else "adapter")
    trained.save_pretrained(str(out))
    if config.method == "full":
        tokenizer.save_pretrained(str(out))
    history = trainer.state.log_history
    return TrainingResult(
        adapter_dir=out,
        steps=int(trainer.state.global_step),
        resumed_from=int(resume.name.split("-")[-1]) if resume else 0,
        seconds=time.monotonic() - started,
        tokens_per_s=progress.tokens_per_s,
        losses=[(int(h["step"]), float(h["loss"])) for h in history if "loss" in h],
        peak_rss=progress.peak_rss,
        method=config.method,
        eval_losses=[(int(h["step"]), float(h["eval_loss"])) for h in history if "eval_loss" in h],
    )


def trainable(config: FinetuneConfig, model: Any, init_adapter: Path | None) -> Any:
    """The model as trained: itself (``method: full``), the given adapter on it, or a fresh LoRA adapter."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if config.method == "full":
        return model
    if init_adapter is not None:
        return PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    lora = config.lora
    return get_peft_model(
        model,
        LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        ),
    )


def _arguments(config: FinetuneConfig, checkpoints: Path, *, evaluate: bool) -> Any:
    from transformers import TrainingArguments

    t = config.training
    every = config.search.eval_every if config.search is not None else t.max_steps
    during: dict[str, Any] = {"eval_strategy": "steps", "eval_steps": every, "save_strategy": "no"}
    if not evaluate:
        during = {"save_strategy": "steps"}
    return TrainingArguments(
        output_dir=str(checkpoints),
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        warmup_steps=t.warmup_steps,
        weight_decay=t.weight_decay,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=1,
        save_steps=t.checkpoint_every,
        save_total_limit=2,
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        **during,
    )
