"""OpenAI request bodies, validated with pydantic. Unknown fields are ignored, as OpenAI's SDKs expect.

Each generation body also turns itself into the backend-neutral :class:`GenerationRequest`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmdock.backends.base import GenerationRequest, SamplingParams
from llmdock.backends.logprobs import MAX_TOP_LOGPROBS
from llmdock.gateway.http import FieldError


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class CalledFunction(_Body):
    name: str
    arguments: str


class MessageToolCall(_Body):
    id: str
    type: Literal["function"] = "function"
    function: CalledFunction


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = None  # which call a tool message answers


class JsonSchemaFormat(_Body):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("json_schema is required when type is 'json_schema'")
        return self


class FunctionDefinition(_Body):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Body):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(_Body):
    include_usage: bool = False


class _SamplingBody(_Body):
    model: str | None = Field(default=None, min_length=1, description="may come from the prompt template")
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1, description="llmdock returns one choice per request")
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None
    # A stored prompt template (LiteLLM's field names), rendered in front of what the request sends.
    prompt_id: str | None = Field(default=None, min_length=1)
    prompt_version: int | None = Field(default=None, gt=0)
    prompt_label: str | None = Field(default=None, min_length=1)
    prompt_variables: dict[str, Any] | None = None

    def _check_prompt_fields(self) -> None:
        """Called by each request body's one model validator (pydantic calls every validator per request)."""
        if self.prompt_id is None:
            if (
                self.model is not None
                and self.prompt_version is None
                and self.prompt_label is None
                and self.prompt_variables is None
            ):
                return  # the usual request: nothing to check
            given = [f for f in ("prompt_version", "prompt_label", "prompt_variables") if getattr(self, f)]
            if given:
                raise FieldError(given[0], f"{given[0]} needs prompt_id")
            if self.model is None:
                raise FieldError("model", "Field required (or a prompt_id whose template names the model)")
        elif self.prompt_version is not None and self.prompt_label is not None:
            raise FieldError("prompt_label", "give prompt_version or prompt_label, not both")

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def sampling(self) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=stop,
            seed=self.seed,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
        )


class ChatCompletionBody(_SamplingBody):
    operation: ClassVar[Literal["chat"]] = "chat"

    messages: list[ChatMessage] = Field(default_factory=list)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)

    def structured_fields(self) -> dict[str, Any] | None:
        """response_format, tools, tool_choice and parallel_tool_calls as sent (None when none is)."""
        fields = {
            "response_format": self.response_format.model_dump(by_alias=True, exclude_none=True)
            if self.response_format
            else None,
            "tools": [t.model_dump(exclude_none=True) for t in self.tools]
            if self.tools is not None
            else None,
            "tool_choice": self.tool_choice.model_dump()
            if isinstance(self.tool_choice, NamedToolChoice)
            else self.tool_choice,
            "parallel_tool_calls": self.parallel_tool_calls,
        }
        if all(v is None for v in fields.values()) and not any(m.tool_calls for m in self.messages):
            return None
        return fields

    @model_validator(mode="after")
    def _fields_together(self) -> ChatCompletionBody:
        if not self.messages and self.prompt_id is None:
            raise FieldError("messages", "Field required (unless a prompt_id gives the messages)")
        if self.top_logprobs is not None and not self.logprobs:
            raise FieldError("top_logprobs", "top_logprobs needs logprobs: true")
        self._check_prompt_fields()
        return self

    def sampling(self) -> SamplingParams:
        params = super().sampling()
        if params.max_tokens is None:
            params.max_tokens = self.max_completion_tokens
        return params

    def generation_request(self) -> GenerationRequest:
        return GenerationRequest(
            "chat",
            self.sampling(),
            messages=[m.model_dump(exclude_none=True) for m in self.messages],
            logprobs=(self.top_logprobs or 0) if self.logprobs else None,
        )


class CompletionBody(_SamplingBody):
    operation: ClassVar[Literal["completion"]] = "completion"

    prompt: str | list[str] | None = None
    # 0 with echo: the prompt alone, scored (its log-probabilities), nothing generated.
    max_tokens: int | None = Field(default=None, ge=0)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("give one prompt per request")
        return value

    @model_validator(mode="after")
    def _fields_together(self) -> CompletionBody:
        if self.prompt is None and self.prompt_id is None:
            raise FieldError("prompt", "Field required (or a prompt_id)")
        self._check_prompt_fields()
        return self

    def prompt_text(self) -> str:
        if self.prompt is None:
            return ""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def generation_request(self) -> GenerationRequest:
        return GenerationRequest(
            "completion", self.sampling(), prompt=self.prompt_text(), logprobs=self.logprobs, echo=self.echo
        )

    def structured_fields(self) -> None:
        """Text completions have no response_format or tools."""
        return None


class EmbeddingBody(_Body):
    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, gt=0)
    user: str | None = None

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)
