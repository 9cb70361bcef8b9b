"""The OpenAPI document tells the truth about errors: every operation
answers failures with the error envelope (FastAPI's default says 422 is
`{"detail": [...]}`), and protected operations name both security schemes."""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ENVELOPE = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                       "details": {}},
    }},
}
ERRORS = {
    "400": "malformed request",
    "401": "missing or invalid credentials",
    "403": "not allowed for this role or key",
    "404": "not found (or belongs to another organization)",
    "409": "conflict with existing data",
    "422": "the request does not match the schema",
    "429": "rate limited; see Retry-After",
}
REF = {"$ref": "#/components/schemas/ErrorEnvelope"}


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version,
                           description=app.description, routes=app.routes)
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        schemas["ErrorEnvelope"] = ENVELOPE
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        for path_item in spec.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.setdefault("responses", {})
                for status, text in ERRORS.items():
                    entry = responses.setdefault(status, {"description": text})
                    entry["content"] = {"application/json": {"schema": REF}}
                for status, entry in responses.items():
                    if status.startswith("5"):
                        entry["content"] = {"application/json": {"schema": REF}}
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
