"""A fine-tuning run as a YAML file: base model, dataset, LoRA and training settings, export.

Every field is checked before anything is loaded, and a mistake is named ``file:line: field: message``:
a typo'd key, a hyperparameter out of range, a base model that is not a configured llama.cpp model (or a
``models:/`` version), a dataset version that does not exist, a chat JSONL path that is missing.

```yaml
name: smollm2-support            # the model the result is registered as
base_model: smollm2              # a configured llama.cpp model, or models:/NAME@alias
dataset: support/2               # a dataset version (NAME, NAME/3, NAME@digest) or a chat JSONL path
lora: {r: 8, alpha: 16}
training: {max_steps: 60, learning_rate: 2e-4, checkpoint_every: 20}
export: {quantize: [q8_0, q4_k_m], alias: candidate}
```
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from llmdock.config import Settings
from llmdock.config.yaml_source import load_yaml_file
from llmdock.errors import ConfigError, LlmdockError
from llmdock.finetune.search_config import SearchSettings
from llmdock.finetune.strategy import MixtureItem, ReplaySettings, Task, check_strategy

Where = Callable[[tuple[str | int, ...]], str]
QuantType = Literal["q8_0", "q4_k_m", "q4_0", "q5_k_m", "q6_k"]
DEFAULT_QUANTS: tuple[QuantType, ...] = ("q8_0", "q4_k_m")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraSettings(_Strict):
    r: int = Field(default=8, ge=1, le=256, description="the rank of the low-rank update")
    alpha: int = Field(default=16, ge=1, description="the update is scaled by alpha / r")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1
    )


class TrainingSettings(_Strict):
    max_steps: int = Field(default=60, ge=1, description="optimizer steps")
    batch_size: int = Field(default=4, ge=1)
    grad_accum: int = Field(default=1, ge=1, description="batches per optimizer step")
    learning_rate: float = Field(default=2e-4, gt=0.0, le=1.0)
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    max_length: int = Field(default=256, ge=16, le=8192, description="tokens per example, longer are cut")
    seed: int = 7
    checkpoint_every: int = Field(default=20, ge=1, description="steps between checkpoints")
    threads: int = Field(
        default=0,
        ge=0,
        le=256,
        description="torch's intra-op threads while training (0: torch's default, one per core). On a host "
        "busy with other work, 1 is faster: torch's threads wait for each other at every operation "
        "(bench/README.md, finetune_gain.py). Not part of the run's identity",
    )

    @model_validator(mode="after")
    def _checkpoints_happen(self) -> TrainingSettings:
        if self.checkpoint_every > self.max_steps:
            raise ValueError(
                f"checkpoint_every ({self.checkpoint_every}) is more than max_steps ({self.max_steps}): "
                "no checkpoint would be written"
            )
        return self


class ExportSettings(_Strict):
    quantize: list[QuantType] = Field(default_factory=lambda: list(DEFAULT_QUANTS), min_length=1)
    alias: str = Field(default="", description="the alias set on the first quantization's version")
    speed_tokens: int = Field(default=32, ge=1, le=1024, description="tokens generated to measure tokens/s")
    lora_adapter: bool = Field(
        default=False,
        description="also register the adapter: as a GGUF LoRA (NAME-lora) and as peft's directory (NAME-adapter)",
    )


class FinetuneConfig(_Strict):
    name: str = Field(min_length=1, description="the registered model name of the result")
    base_model: str = Field(min_length=1)
    dataset: str = Field(default="", description="a dataset version or file; or mixture: instead")
    task: Task = Field(default="sft", description="sft: loss on assistant tokens; pretrain: on every token")
    method: Literal["lora", "full"] = "lora"
    train_split: str = "train"
    mixture: list[MixtureItem] = Field(default_factory=list, description="datasets mixed by weight")
    replay: ReplaySettings | None = None
    init_adapter: str = Field(default="", description="start from this LoRA adapter (models:/… or a path)")
    lora: LoraSettings = Field(default_factory=LoraSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    search: SearchSettings | None = None

    @field_validator("name")
    @classmethod
    def _registry_name(cls, value: str) -> str:
        from llmdock.registry.labels import check_name

        try:
            return check_name(value, "model")
        except LlmdockError as exc:
            raise ValueError(exc.message) from None

    def hyperparameters(self) -> dict[str, Any]:
        """What lineage records and what names a run: everything that changes the weights."""
        found: dict[str, Any] = {"task": self.task, "method": self.method, "train_split": self.train_split}
        if self.method == "lora":
            found["lora"] = self.lora.model_dump()
        found["training"] = self.training.model_dump(exclude={"threads"})  # how fast, not which weights
        if self.mixture:
            found["mixture"] = [m.model_dump() for m in self.mixture]
        if self.replay is not None:
            found["replay"] = self.replay.model_dump()
        if self.init_adapter:
            found["init_adapter"] = self.init_adapter
        return found


def run_id(config: FinetuneConfig, base_sha256: str, dataset_digest: str) -> str:
    """The same config on the same base and rows is the same run, so ``--resume`` finds its checkpoints."""
    key = orjson.dumps(
        {"hp": config.hyperparameters(), "base": base_sha256, "data": dataset_digest},
        option=orjson.OPT_SORT_KEYS,
    )
    return "ft-" + hashlib.sha256(key).hexdigest()[:12]


def load_config(path: Path, settings: Settings) -> tuple[FinetuneConfig, Where]:
    """The run's settings, checked (fields, base model, dataset) with errors naming ``file:line: field``."""
    data, where = load_yaml_file(Path(path))
    try:
        config = FinetuneConfig.model_validate(data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        loc = tuple(first["loc"])
        raise ConfigError(_message(first) + more, where=where(loc)) from None
    check_strategy(config, where, set(data))
    _check_base(config.base_model, settings, where(("base_model",)))
    return config, where


def _message(error: Any) -> str:
    """Pydantic's message without its "Value error, " prefix (a validator's own words)."""
    return str(error["msg"]).removeprefix("Value error, ")


def _check_base(name: str, settings: Settings, where: str) -> None:
    if name.startswith("models:/"):
        return  # resolved (and reported) when the base is loaded
    models = settings.all_models()
    model = models.get(name)
    llama = [n for n, m in sorted(models.items()) if _gguf_spec(m.backend_params(), m.backend)]
    if model is None:
        raise ConfigError(
            f"unknown base model {name!r}: a configured llama.cpp model ({', '.join(llama) or 'none'}) "
            "or models:/NAME@alias",
            where=where,
        )
    deployment = model.deployment_configs()[0][0]
    if not _gguf_spec(deployment.backend_params(), deployment.backend):
        raise ConfigError(
            f"base model {name!r} is not a llama.cpp GGUF model (backend {deployment.backend!r}); "
            f"one of: {', '.join(llama) or 'none'}",
            where=where,
        )


def _gguf_spec(params: dict[str, Any], backend: str | None) -> str:
    return str(params.get("model_path", "")) if backend == "llamacpp" else ""


def base_model_spec(name: str, settings: Settings) -> str:
    """The model file spec (``package://…``, a path, ``models:/…``) of a checked base model."""
    if name.startswith("models:/"):
        return name
    deployment = settings.all_models()[name].deployment_configs()[0][0]
    return _gguf_spec(deployment.backend_params(), deployment.backend)
