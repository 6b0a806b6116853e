"""Typed settings with one explicit source order: defaults < llmdock.yaml < LLMDOCK_* env < CLI flags.

A bad config never produces a traceback: :func:`load_settings` raises :class:`ConfigError` whose ``where``
names the file, the line and the field (or the environment variable) that is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, field_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from llmdock.config.batch_settings import BatchSettings
from llmdock.config.models import ModelConfig, builtin_models
from llmdock.config.monitor_settings import AlertSettings, MetricsSettings, OnlineEvalSettings
from llmdock.config.sections import (
    AuthSettings,
    CacheSettings,
    GuardSettings,
    PrivacySettings,
    PromptSettings,
    RagSettings,
    RetentionSettings,
    TraceSettings,
)
from llmdock.config.yaml_source import YamlDocument, config_error_from_pydantic, where_in

DEFAULT_CONFIG_FILE = "llmdock.yaml"


class Settings(BaseSettings):
    """All of llmdock's settings. Every field can be set in llmdock.yaml or as LLMDOCK_<FIELD> (nested: __)."""

    model_config = SettingsConfigDict(env_prefix="LLMDOCK_", env_nested_delimiter="__", extra="forbid")

    home: Path = Field(default=Path("~/.llmdock"), description="Where the store and artifacts live.")
    database_url: str = Field(default="", description="SQLAlchemy URL; empty means SQLite in home.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    worker_healthcheck_s: int = Field(
        default=30,
        ge=1,
        description="With --workers N: seconds a worker may miss uvicorn's ping before a restart.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    default_model: str = "smollm2"
    default_embedding_model: str = "all-minilm-l6-v2"
    include_builtin_models: bool = True
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    pipeline: list[str] = Field(
        default_factory=lambda: ["preprocess", "cache", "generate", "structured", "postprocess"]
    )
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    unicode_normalization: Literal["NFC", "NFKC", "NFD", "NFKD", "none"] = "NFC"
    n_threads: int = Field(default=0, ge=0, description="Threads for local inference; 0 = all cores.")
    trace: TraceSettings = Field(default_factory=TraceSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    redis_url: str = Field(default="", description="redis://host:port/db for state shared by gateway workers")
    auth: AuthSettings = Field(default_factory=AuthSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    prompts: PromptSettings = Field(default_factory=PromptSettings)

    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    guards: GuardSettings = Field(default_factory=GuardSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    online_eval: OnlineEvalSettings = Field(default_factory=OnlineEvalSettings)
    rag: RagSettings = Field(default_factory=RagSettings)
    job_scheduler: bool = Field(
        default=False, description="fire the stored schedules (llmdock jobs schedule) in each gateway worker"
    )
    batch: BatchSettings = Field(default_factory=BatchSettings)

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'llmdock.db'}"

    def all_models(self) -> dict[str, ModelConfig]:
        merged = builtin_models() if self.include_builtin_models else {}
        merged.update(self.models)
        return merged

    _source: YamlDocument | None = PrivateAttr(default=None)

    def where(self, loc: tuple[str | int, ...]) -> str:
        """Where a setting came from, for error messages: ``file:line: field``, an env variable, or the field."""
        return where_in(loc, self._source, dict(os.environ))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest priority first: CLI flags (init) > LLMDOCK_* env > the YAML file > field defaults.
        return (init_settings, env_settings, _YamlSource(settings_cls, _yaml_data(settings_cls)))


def _yaml_data(settings_cls: type[BaseSettings]) -> dict[str, Any]:
    return dict(getattr(settings_cls, "yaml_data", {}))


class _YamlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._data


def find_config_file(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    env_path = os.environ.get("LLMDOCK_CONFIG")
    if env_path:
        return Path(env_path)
    local = Path(DEFAULT_CONFIG_FILE)
    return local if local.exists() else None


def load_settings(config_file: Path | None = None, **cli_overrides: Any) -> Settings:
    """Build the settings from every source. CLI flags that are ``None`` were not given and are ignored."""
    path = find_config_file(config_file)
    doc = YamlDocument(path) if path is not None else None
    # A subclass per load carries this file's data into settings_customise_sources (no module state).
    namespace = {
        "__annotations__": {"yaml_data": ClassVar[dict[str, Any]]},
        "yaml_data": doc.data if doc else {},
    }
    loaded = type("LoadedSettings", (Settings,), namespace)
    try:
        settings: Settings = loaded(**{k: v for k, v in cli_overrides.items() if v is not None})
    except PydanticValidationError as exc:
        raise config_error_from_pydantic(exc, doc) from None
    settings._source = doc
    return settings
