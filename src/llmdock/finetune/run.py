"""One fine-tuning run from its config file to registered GGUF versions with their lineage.

A run is named by what it trains (``ft-`` + a hash of the hyperparameters, the base GGUF and the rows), so
running the same config again after a kill finds the same directory, ``<home>/finetune/runs/<run>/``, and
``--resume`` continues from its newest complete checkpoint. ``run.json`` there records what happened.

Each quantization is registered as a version of ``name`` with lineage as structured keys, so it can be
queried (``llmdock finetune lineage dataset_version=…``): ``base_model``, ``base_model_version``,
``dataset``, ``dataset_version``, ``training_run``, ``method``, ``hyperparameters`` (a mapping),
``quantization`` and ``converter``; and metrics: its size and tokens/s beside the f16 GGUF's, the training
time, tokens/s, peak RSS and the first and last loss.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmdock.config import Settings
from llmdock.errors import Conflict
from llmdock.finetune.base import BaseModel, load_for_training, prepare_base
from llmdock.finetune.config import FinetuneConfig, load_config, run_id
from llmdock.finetune.convert import converter_source, find_converter
from llmdock.finetune.data import TrainingRows, encode_all, load_rows
from llmdock.finetune.export import Exported, export
from llmdock.finetune.progress import status
from llmdock.store.audit import Actor
from llmdock.store.models import ModelVersion

if TYPE_CHECKING:
    from llmdock.finetune.train import TrainingResult


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run_id: str
    run_dir: Path
    training: TrainingResult
    exported: Exported
    versions: list[ModelVersion]


def run_finetune(
    config_path: Path, settings: Settings, actor: Actor, *, resume: bool = False, restart: bool = False
) -> RunOutcome:
    config, where = load_config(config_path, settings)
    rows = load_rows(
        config.dataset,
        config.train_split,
        settings,
        relative_to=Path(config_path).parent,
        where=where(("dataset",)),
    )
    base = prepare_base(config.base_model, settings, where=where(("base_model",)))
    rid = run_id(config, base.sha256, rows.lineage["dataset_version"])
    run_dir = Path(settings.home) / "finetune" / "runs" / rid
    _claim(run_dir, rid, resume=resume, restart=restart)
    from llmdock.finetune.train import train  # torch and transformers: only once the inputs are sound

    model, tokenizer = load_for_training(base)
    with status(f"encoding {len(rows.rows)} rows with the chat template (loss on assistant tokens)"):
        examples = encode_all(tokenizer, rows.rows, config.training.max_length)
    _record(run_dir, {"run": rid, "status": "training", "config": config.model_dump()})
    result = train(config, model, tokenizer, examples, run_dir)
    _record(run_dir, {"status": "exporting", "steps": result.steps, "resumed_from": result.resumed_from})
    exported = export(
        base,
        result.adapter_dir,
        run_dir,
        config.name,
        config.export.quantize,
        config.export.speed_tokens,
        settings.home,
    )
    versions = register(config, base, rows, rid, result, exported, settings, actor)
    _record(run_dir, {"status": "registered", "versions": [f"{v.name}/{v.version}" for v in versions]})
    return RunOutcome(rid, run_dir, result, exported, versions)


def _claim(run_dir: Path, rid: str, *, resume: bool, restart: bool) -> None:
    """A run with checkpoints continues only when asked (``--resume``) or starts over when asked."""
    from llmdock.finetune.train import last_complete_checkpoint

    last = last_complete_checkpoint(run_dir / "checkpoints")
    if restart and run_dir.exists():
        shutil.rmtree(run_dir)
    elif last is not None and not resume:
        raise Conflict(
            f"run {rid} already has a checkpoint at step {last.name.split('-')[-1]} ({run_dir}): "
            "--resume to continue it, --restart to start over",
            param="run",
        )
    run_dir.mkdir(parents=True, exist_ok=True)


def _record(run_dir: Path, fields: dict[str, Any]) -> None:
    path = run_dir / "run.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(fields)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def register(
    config: FinetuneConfig,
    base: BaseModel,
    rows: TrainingRows,
    rid: str,
    result: TrainingResult,
    exported: Exported,
    settings: Settings,
    actor: Actor,
) -> list[ModelVersion]:
    """Each quantization as the next version of ``config.name``; the alias goes to the first."""
    from llmdock.registry import ModelRegistry
    from llmdock.store import Store

    tools = find_converter(settings.home)
    source = converter_source(tools) if tools else {}
    converter = f"llama-cpp-python {source.get('version', '?')} sdist convert_hf_to_gguf.py"
    lineage = base.lineage() | rows.lineage | {"training_run": rid, "method": "lora"}
    lineage |= {"hyperparameters": config.hyperparameters(), "converter": converter}
    trained = {
        "train_seconds": round(result.seconds, 1),
        "train_tokens_per_s": round(result.tokens_per_s, 1),
        "train_peak_rss": result.peak_rss,
        "train_steps": result.steps,
        "train_loss_first": result.losses[0][1] if result.losses else None,
        "train_loss_last": result.losses[-1][1] if result.losses else None,
        "f16_size": exported.measures["f16"]["size"],
        "f16_tokens_per_s": exported.measures["f16"]["tokens_per_s"],
    }
    store = Store(settings.resolved_database_url())
    try:
        registry = ModelRegistry(store, settings.home)
        versions = []
        for kind, path in exported.files.items():
            measured = exported.measures[kind]
            row = registry.register(
                config.name,
                path,
                actor,
                fmt="gguf",
                lineage=lineage | {"quantization": kind},
                metrics=trained | measured | {"quantizer_note": exported.notes.get(kind, "")},
                description=f"LoRA on {base.name} over {rows.lineage['dataset']} ({kind})",
                progress=False,
            )
            versions.append(row)
        if config.export.alias and versions:
            registry.labels.set(config.name, config.export.alias, versions[0].version, actor)
    finally:
        store.close()
    return versions
