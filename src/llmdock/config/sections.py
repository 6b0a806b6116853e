"""The settings sections: cache, guards, traces, auth, retention, prompt templates, privacy."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from llmdock.config.trace_policy import RetentionRule, SampleRule


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
    sample: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="share of requests whose trace keeps its bodies and spans (the rest keep usage and cost)",
    )
    sampling: list[SampleRule] = Field(default_factory=list, description="per model/team shares; first match")
    journal: bool = Field(
        default=True,
        description="append each finished trace to a write-ahead file under <home>/journal before the "
        "response is sent, so that a crash of the process loses no answered request's trace or usage",
    )
    journal_sync: Literal["write", "fsync"] = Field(
        default="write",
        description="write = the kernel has the trace before the answer leaves (survives kill -9 of the "
        "gateway); fsync = also on disk, synced in groups (survives a power cut; costs a disk sync per group)",
    )
    journal_max_mb: float = Field(
        default=512, gt=0, description="how much the journal may hold while the store is away"
    )
    ingest: Literal["auto", "thread", "process"] = Field(
        default="auto",
        description="who stores journaled traces: process = an ingester process shared by the server's "
        "workers (their event loops never wait for a database writer); thread = a thread in each process; "
        "auto = process under `llmdock serve`, thread elsewhere (CLI, evaluations)",
    )
    journal_full: Literal["reject", "drop"] = Field(
        default="reject",
        description="past journal_max_mb: reject = answer new requests 503 until the store is back; "
        "drop = serve them, their traces kept in memory only (counted as dropped if that overflows too)",
    )


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
    rules: list[RetentionRule] = Field(
        default_factory=list, description="per model/team periods; the first match decides"
    )
    interval_s: float = Field(default=3600.0, gt=0, description="how often the gateway applies it")


class PromptSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cache_ttl_s: float = Field(
        default=10.0, ge=0, description="how long a worker reuses a resolved template version (label moves)"
    )


# What PII detection looks for unless privacy.entities says otherwise (Presidio entity names, and llmdock's
# own: STREET_ADDRESS, ID_NUMBER, DATE_OF_BIRTH, AGE): the direct identifiers. PERSON is found by name lists
# and titles (cheap); spaCy's statistical NER adds what the lists miss when privacy.ner is on.
DEFAULT_PII_ENTITIES = (
    "CREDIT_CARD",
    "CRYPTO",
    "EMAIL_ADDRESS",
    "IBAN_CODE",
    "IP_ADDRESS",
    "PHONE_NUMBER",
    "US_SSN",
    "PERSON",
    "STREET_ADDRESS",
    "ID_NUMBER",
    "DATE_OF_BIRTH",
)

# Regions whose national phone formats are recognised (numbers written +<country code> are, in any case).
DEFAULT_PHONE_REGIONS = ("US", "GB")


class PrivacySettings(BaseModel):
    """PII redaction before anything is persisted, and encryption at rest (docs/configuration.md#privacy)."""

    model_config = ConfigDict(extra="forbid")

    pii: Literal["off", "mask", "pseudonymize"] = Field(
        default="mask",
        description="what happens to PII in traces, the journal, shared cache entries and logs before they are "
        "written: mask (default: direct identifiers become <ENTITY>), pseudonymize, or off",
    )
    entities: list[str] = Field(default_factory=lambda: list(DEFAULT_PII_ENTITIES))
    score_threshold: float = Field(default=0.4, ge=0, le=1, description="Presidio score needed to redact")
    phone_regions: list[str] = Field(default_factory=lambda: list(DEFAULT_PHONE_REGIONS))
    ner: bool = Field(
        default=False,
        description="spaCy's statistical NER for PERSON besides the name lists (finds names the lists lack; "
        "about 25 ms of CPU per 1,000 characters in the trace writer)",
    )
    pseudonym_key_env: str = Field(default="LLMDOCK_PSEUDONYM_KEY", description="HMAC key for pseudonyms")
    pseudonym_key_file: Path | None = None
    encrypt_bodies: bool = Field(default=False, description="encrypt trace input/output text at rest")
    encryption_key_env: str = Field(default="LLMDOCK_ENCRYPTION_KEY")
    encryption_key_file: Path | None = None

    @field_validator("pii", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML reads a bare `off` as false


class RagSettings(BaseModel):
    """Knowledge bases and the ``ground`` stage (issue 18); a model names its base with ``knowledge_base``."""

    model_config = ConfigDict(extra="forbid")

    chunk_tokens: int = Field(
        default=200, ge=16, le=512, description="longest chunk, in the embedding model's tokens"
    )
    chunk_overlap: int = Field(default=32, ge=0, description="tokens a chunk shares with the one before")
    embed_batch: int = Field(default=64, gt=0, description="chunks embedded per call while ingesting")
    top_k: int = Field(default=4, gt=0, le=50, description="chunks the ground stage puts in the context")
    mode: Literal["hybrid", "dense", "bm25"] = Field(
        default="hybrid", description="dense vectors, BM25, or both fused by reciprocal rank"
    )
    mmr: bool = Field(default=False, description="re-rank for diversity (maximal marginal relevance)")
    mmr_lambda: float = Field(default=0.5, ge=0, le=1, description="1 = relevance only, 0 = diversity only")
    min_score: float = Field(
        default=0.0, ge=0, description="dense hits below this cosine similarity are left out (0 = keep all)"
    )
    context_template: str = Field(
        default=(
            "Answer from the numbered sources below and cite them as [n]. If they do not answer the "
            "question, say so.\n\n{sources}{glossary}"
        ),
        description="the text put before the question; {sources} and {glossary} are filled in",
    )
    memory_turns: int = Field(
        default=20, ge=1, description="previous exchanges of a session the memory stage loads at most"
    )
    memory_share: float = Field(
        default=0.5, gt=0, le=1, description="share of the model's window a session's history may take"
    )
    memory_summary_model: str = Field(
        default="",
        description="model that summarises the turns a session's window no longer holds ('' = drop them)",
    )
    memory_summary_tokens: int = Field(default=160, gt=0, le=2048, description="longest summary, in tokens")
    rewrite_model: str = Field(
        default="",
        description="model that rewrites a follow-up question into a standalone one for retrieval ('' = off)",
    )
    route_by: Literal["content", "description"] = Field(
        default="content",
        description="how a model naming several knowledge bases picks one per question: the question's "
        "embedding against each base's mean chunk vector, or against its description's",
    )
