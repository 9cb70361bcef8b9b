"""A bounded schemathesis run over /openapi.json, authenticated: no 5xx and
no response that breaks the schema."""
from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from core.settings import load_settings
from serve.app import build_app
from serve.stack import Stack

# Sign-in with random credentials would trip the per-IP login throttle that
# the other tests rely on; sign-out would end the fuzzing session.
EXCLUDED = {("POST", "/v1/auth/login"), ("POST", "/v1/auth/logout")}


@pytest.fixture(scope="session")
def fuzz_headers(stack: Stack) -> dict[str, str]:
    resp = httpx.post(f"{stack.api_url}/v1/auth/register", timeout=30, json={
        "email": f"fuzz{uuid.uuid4().hex[:10]}@example.com", "password": "fuzzing password",
        "name": "Fuzz", "organization_name": "Fuzz Org"})
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


# The document the engine serves, built offline (building the app does no I/O);
# test_openapi_document_is_what_the_engine_serves checks they are the same.
SPEC = build_app(load_settings()).openapi()
schema = schemathesis.openapi.from_dict(SPEC)


def test_openapi_document_is_what_the_engine_serves(stack: Stack) -> None:
    served = httpx.get(f"{stack.api_url}/openapi.json", timeout=30).json()
    assert served == SPEC
    schemes = served["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer"
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key",
                                 "description": "An API key from /v1/api-keys"}


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: Any, stack: Stack,
                                    fuzz_headers: dict[str, str]) -> None:
    if (case.method.upper(), case.path) in EXCLUDED:
        return
    headers = {**fuzz_headers, **(case.headers or {})}
    if "X-API-Key" in headers:
        headers.pop("Authorization")
    case.call_and_validate(base_url=stack.api_url, headers=headers, timeout=30,
                           checks=[not_a_server_error, response_schema_conformance])
