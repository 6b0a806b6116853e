"""The published OpenAPI document: every reference resolves, it validates, it says what the gateway answers."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from openapi_spec_validator import validate
from schemathesis.core.result import Err

from llmdock.gateway.schemas import ErrorBody
from tests.conftest import Gateway


def refs(node: Any) -> list[str]:
    """Every ``$ref`` in a JSON document."""
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def resolve(doc: dict[str, Any], ref: str) -> Any:
    """The node a local reference (``#/a/b``) points at; KeyError if there is none."""
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


@pytest.fixture
async def document(gateway: Gateway) -> dict[str, Any]:
    resp = await gateway.client.get("/openapi.json")
    assert resp.status_code == 200
    doc: dict[str, Any] = resp.json()
    return doc


async def test_every_reference_in_the_openapi_document_resolves(document: dict[str, Any]) -> None:
    found = refs(document)
    assert "#/components/schemas/MessageToolCall" in found  # the two that did not resolve (issue 15)
    assert "#/components/schemas/StreamOptions" in found
    unresolved = []
    for ref in sorted(set(found)):
        try:
            resolve(document, ref)
        except KeyError:
            unresolved.append(ref)
    assert unresolved == []


async def test_the_openapi_document_validates_and_schemathesis_loads_every_operation(
    document: dict[str, Any],
) -> None:
    validate(document)  # raises on an invalid OpenAPI 3.1 document
    schema = schemathesis.openapi.from_dict(document)
    errors = [str(r.err()) for r in schema.get_all_operations() if isinstance(r, Err)]
    assert errors == []
    assert len(list(schema.get_all_operations())) == sum(len(item) for item in document["paths"].values())


async def test_bodies_the_handlers_parse_are_documented(document: dict[str, Any]) -> None:
    def body_ref(path: str) -> str:
        content = document["paths"][path]["post"]["requestBody"]["content"]
        ref: str = content["application/json"]["schema"]["$ref"]
        return ref

    assert body_ref("/v1/chat/completions") == "#/components/schemas/ChatCompletionBody"
    assert body_ref("/v1/completions") == "#/components/schemas/CompletionBody"
    assert body_ref("/admin/keys") == "#/components/schemas/KeyBody"
    assert body_ref("/admin/prompts/{name}/labels") == "#/components/schemas/LabelBody"
    chat = document["components"]["schemas"]["ChatCompletionBody"]
    assert "messages" in chat["properties"]
    assert "$defs" not in chat


async def test_errors_are_documented_as_the_openai_error_the_gateway_answers(
    gateway: Gateway, document: dict[str, Any]
) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's {"detail": [...]}: never answered here
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "422" not in operation["responses"], (method, path)
            error = operation["responses"]["4XX"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorBody"}
    resp = await gateway.client.get("/admin/usage", params={"days": "many"})  # a query FastAPI validates
    assert resp.status_code in (403, 422)
    ErrorBody.model_validate(resp.json())
    resp = await gateway.client.post("/v1/chat/completions", json={"model": "fake", "messages": "hi"})
    assert resp.status_code == 422
    assert ErrorBody.model_validate(resp.json()).error.param == "messages"
