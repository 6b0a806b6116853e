"""The published OpenAPI document (``GET /openapi.json``): every reference resolves, errors are OpenAI's.

The generation and admin handlers parse their bodies themselves (bounded, errors naming the field), so
FastAPI does not see them: each such route declares its body with :func:`json_body`. pydantic writes the
models nested in a body under the body schema's own ``$defs``, and ``#/$defs/…`` inside a path item
resolves against the document's root, where there is no ``$defs``: :func:`published` moves every body and
its nested models into ``components/schemas``. It also documents the errors the gateway really answers
(an OpenAI error body, never FastAPI's ``{"detail": [...]}``) and the bearer key.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from llmdock.auth.roles import PUBLIC_PATHS
from llmdock.gateway.schemas import ErrorBody

REF = "#/components/schemas/{model}"
FASTAPI_ERRORS = ("HTTPValidationError", "ValidationError")  # what FastAPI documents, never answered here


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of a route whose handler parses ``model`` from a JSON body."""
    schema = model.model_json_schema(ref_template=REF)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def install(app: FastAPI) -> None:
    """Serve :func:`published` of the app's routes as its OpenAPI document (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = published(
                get_openapi(title=app.title, version=app.version, routes=app.routes)
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def published(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (FastAPI's document) with body schemas in components and OpenAI-shaped error responses."""
    components: dict[str, Any] = doc.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    for name in FASTAPI_ERRORS:
        schemas.pop(name, None)
    _hoist(schemas, ErrorBody.model_json_schema(ref_template=REF))
    components["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
    for path, item in doc.get("paths", {}).items():
        for operation in item.values():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                media["schema"] = _hoist(schemas, media["schema"])
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses["4XX"], responses["5XX"] = _error_response(), _error_response()
            if path not in PUBLIC_PATHS:
                operation["security"] = [{"apiKey": []}]
    return doc


def _error_response() -> dict[str, Any]:
    return {
        "description": 'An OpenAI-shaped error: {"error": {"message", "type", "param", "code"}}',
        "content": {"application/json": {"schema": {"$ref": REF.format(model=ErrorBody.__name__)}}},
    }


def _hoist(schemas: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Put a model's schema and its ``$defs`` into ``schemas``; a reference to it in their place."""
    for name, nested in schema.pop("$defs", {}).items():
        _add(schemas, name, nested)
    name = schema["title"]
    _add(schemas, name, schema)
    return {"$ref": REF.format(model=name)}


def _add(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    if schemas.setdefault(name, schema) != schema:  # two models of one name: a reference would be ambiguous
        raise RuntimeError(f"two different schemas are named {name!r} in the OpenAPI document")
