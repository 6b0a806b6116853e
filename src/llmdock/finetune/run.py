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

from llmdock.backends.model_files import resolve_model_file
from llmdock.config import Settings
from llmdock.errors import ConfigError, Conflict
from llmdock.finetune import mixing
from llmdock.finetune.base import BaseModel, load_for_training, prepare_base
from llmdock.finetune.config import FinetuneConfig, load_config, run_id
from llmdock.finetune.convert import converter_source, find_converter
from llmdock.finetune.export import Exported, export
from llmdock.finetune.progress import status
from llmdock.finetune.strategy import FULL_MAX_PARAMS
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
    found = mixing.load_sources(
        config, settings, split=config.train_split, relative_to=Path(config_path).parent, where=where
    )
    data = mixing.lineage(found)
    adapter = resolve_adapter(config.init_adapter, settings, where(("init_adapter",)))
    base = prepare_base(config.base_model, settings, where=where(("base_model",)))
    rid = run_id(config, base.sha256, data["dataset_version"])
    run_dir = Path(settings.home) / "finetune" / "runs" / rid
    _claim(run_dir, rid, resume=resume, restart=restart)
    from llmdock.finetune.train import train  # torch and transformers: only once the inputs are sound

    model, tokenizer = load_for_training(base)
    check_full(config, model, where(("method",)))
    with status(f"encoding {sum(len(s.data.rows) for s in found)} rows ({', '.join(s.task for s in found)})"):
        encoded = mixing.examples(config, tokenizer, found)
    _record(run_dir, {"run": rid, "status": "training", "config": config.model_dump()})
    result = train(config, model, tokenizer, encoded, run_dir, init_adapter=adapter)
    _record(run_dir, {"status": "exporting", "steps": result.steps, "resumed_from": result.resumed_from})
    exported = export(
        base,
        result.adapter_dir,
        run_dir,
        config.name,
        config.export.quantize,
        config.export.speed_tokens,
        settings.home,
        full=config.method == "full",
        lora=config.export.lora_adapter,
    )
    versions = register(config, base, data, rid, result, exported, settings, actor)
    _record(run_dir, {"status": "registered", "versions": [f"{v.name}/{v.version}" for v in versions]})
    return RunOutcome(rid, run_dir, result, exported, versions)


def resolve_adapter(spec: str, settings: Settings, where: str) -> Path | None:
    """The adapter a run starts from: a registered directory (``models:/NAME@alias``) or a local one."""
    if not spec:
        return None
    if spec.startswith("models:/"):
        path, _origin = resolve_model_file(spec, settings, where=where)
    else:
        path = Path(spec).expanduser()
    if not (path / "adapter_config.json").exists():
        raise ConfigError(f"{spec!r} is not a LoRA adapter (no adapter_config.json in {path})", where=where)
    return path


def check_full(config: FinetuneConfig, model: Any, where: str) -> None:
    """``method: full`` only where every weight and its optimizer state fit: up to FULL_MAX_PARAMS."""
    if config.method != "full":
        return
    count = sum(p.numel() for p in model.parameters())
    if count > FULL_MAX_PARAMS:
        raise ConfigError(
            f"the base has {count / 1e6:.0f}M parameters, more than full fine-tuning allows here "
            f"({FULL_MAX_PARAMS / 1e6:.0f}M, about 16 bytes each with AdamW): use method: lora",
            where=where,
        )


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
    data: dict[str, Any],
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
    lineage = base.lineage() | data | {"training_run": rid, "method": config.method}
    if config.init_adapter:
        lineage["init_adapter"] = config.init_adapter
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
                description=f"{config.method} on {base.name} over {data['dataset']} ({kind})",
                progress=False,
            )
            versions.append(row)
        if config.export.alias and versions:
            registry.labels.set(config.name, config.export.alias, versions[0].version, actor)
        if exported.lora is not None:
            versions += _register_adapter(
                registry, config, base, exported.lora, result, lineage, trained, actor
            )
    finally:
        store.close()
    return versions


def _register_adapter(
    registry: Any,
    config: FinetuneConfig,
    base: BaseModel,
    gguf_lora: Path,
    result: TrainingResult,
    lineage: dict[str, Any],
    metrics: dict[str, Any],
    actor: Actor,
) -> list[ModelVersion]:
    """The adapter twice: as a GGUF LoRA (``NAME-lora``, for llama.cpp's ``lora_path`` on the base) and as
    peft's directory (``NAME-adapter``, what ``init_adapter:`` starts a later run from)."""
    adapter = lineage | {"adapter_of": base.lineage()["base_model_version"], "quantization": "f16"}
    versions = []
    for name, path, fmt in (
        (f"{config.name}-lora", gguf_lora, "gguf"),
        (f"{config.name}-adapter", result.adapter_dir, "peft"),
    ):
        row = registry.register(
            name,
            path,
            actor,
            fmt=fmt,
            lineage=adapter,
            metrics=metrics,
            description=f"the LoRA adapter of {config.name} for {base.name} ({fmt})",
            progress=False,
        )
        versions.append(row)
        if config.export.alias:
            registry.labels.set(name, config.export.alias, row.version, actor)
    return versions
