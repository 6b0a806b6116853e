"""The body of ``POST /v1/responses`` (OpenAI's Responses API), validated with pydantic.

What the openai SDK's ``client.responses.create(...)`` sends: ``input`` as a string or a list of items
(messages, ``function_call`` and ``function_call_output``), ``instructions``, function ``tools`` and
``tool_choice``, ``text.format`` (text, json_object, json_schema), sampling, ``store`` and
``previous_response_id``. Unknown fields are ignored, as on the other routes; the features llmdock does not
have (built-in tools, images, background runs) are refused naming the field. Items are told apart by their
``type`` (a message may leave it out), so an error names the item's type in its path:
``input.1.function_call.call_id: Field required``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator
from pydantic_core import PydanticCustomError

from llmdock.gateway.http import FieldError
from llmdock.gateway.schemas import FUNCTION_NAME, FunctionDefinition, NamedFunction


class _Item(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Item):
    """A text content part: ``input_text`` in what the caller says, ``output_text`` in an earlier answer."""

    type: Literal["input_text", "output_text"]
    text: str


class MessageItem(_Item):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    # A string is one text part: turned into it before validation, so errors name the part.
    content: list[TextPart] = Field(description="a string or a list of input_text / output_text parts")
    id: str | None = None
    status: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _string_content(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("content"), str):
            kind = "output_text" if data.get("role") == "assistant" else "input_text"
            return {**data, "content": [{"type": kind, "text": data["content"]}]}
        return data


class FunctionCallItem(_Item):
    """A tool call the model made earlier (as it came back in a response's ``output``)."""

    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(pattern=FUNCTION_NAME)
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(_Item):
    """What the caller's function returned for the call ``call_id``."""

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str
    id: str | None = None
    status: str | None = None


def _item_type(value: Any) -> str | None:
    if isinstance(value, dict):
        found = value.get("type", "message")
        return found if isinstance(found, str) else None
    return getattr(value, "type", None)


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    Discriminator(
        _item_type,
        custom_error_type="unsupported_item",
        custom_error_message="only message, function_call and function_call_output items are supported",
    ),
]


class FunctionTool(FunctionDefinition):
    """A function tool, as the Responses API writes it: the chat definition's fields, flat."""

    type: Literal["function"]

    @model_validator(mode="before")
    @classmethod
    def _functions_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type") != "function":
            raise PydanticCustomError(
                "unsupported_tool",
                "only function tools are supported, not {kind}",
                {"kind": repr(data.get("type"))},
            )
        return data


class FunctionChoice(NamedFunction):
    type: Literal["function"]


class TextFormat(_Item):
    """``text.format``: plain text, any JSON object, or JSON following ``schema``."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, pattern=FUNCTION_NAME)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> TextFormat:
        if self.type == "json_schema":
            if self.name is None:
                raise FieldError("text.format.name", "Field required when type is 'json_schema'")
            if self.schema_ is None:
                raise FieldError("text.format.schema", "Field required when type is 'json_schema'")
        return self


class TextOptions(_Item):
    format: TextFormat | None = None


class ResponsesBody(_Item):
    """``POST /v1/responses``."""

    model: str = Field(min_length=1)
    # A string is one user message: turned into that item before validation, so errors name the item.
    input: list[InputItem] = Field(description="a string (one user message) or a list of input items")
    instructions: str | None = None
    tools: list[FunctionTool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    max_output_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    store: bool | None = None
    stream: bool = False
    previous_response_id: str | None = Field(default=None, min_length=1)
    user: str | None = None
    background: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _string_input(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("input"), str):
            return {**data, "input": [{"type": "message", "role": "user", "content": data["input"]}]}
        return data

    @model_validator(mode="after")
    def _supported(self) -> ResponsesBody:
        if self.background:
            raise FieldError("background", "background responses are not supported: leave out background")
        if not self.input and self.previous_response_id is None:
            raise FieldError("input", "give at least one input item")
        return self

    def input_items(self) -> list[dict[str, Any]]:
        """The input items, each as JSON."""
        return [item.model_dump(exclude_none=True) for item in self.input]

    def format(self) -> dict[str, Any]:
        """``text.format`` as sent (by its wire names), plain text when none is."""
        found = self.text.format if self.text is not None else None
        if found is None:
            return {"type": "text"}
        return found.model_dump(by_alias=True, exclude_none=True)
