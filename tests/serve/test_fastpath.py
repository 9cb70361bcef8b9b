"""The raw-ASGI fast path in front of FastAPI's middleware (serve.app.App):
the body cap first, then the fast routes, then everything FastAPI wraps the
other routes in; a fast route answers even a bug with the error envelope.
FastAPI's documentation routes come after the API's, and still answer."""
from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from starlette.middleware.errors import ServerErrorMiddleware

from core.settings import Settings
from serve.fastpath import FastPath, _answer
from serve.limits import BodyLimit
from tests.serve.local_app import local_app


async def test_the_body_cap_then_the_fast_path_stand_before_fastapis_middleware(
        settings: Settings) -> None:
    async with local_app(settings) as local:
        stack = local.app.build_middleware_stack()
        assert isinstance(stack, BodyLimit)
        assert isinstance(stack.app, FastPath)
        assert isinstance(stack.app.app, ServerErrorMiddleware)
        async with local.client() as client:
            # What the fast path passes on still meets FastAPI's validation
            # (a non-canonical id) and error handlers (an unknown route).
            odd = await client.post("/v1/channels/telegram/NOT-A-UUID/webhook", content=b"{}")
            missing = await client.get("/v1/nothing-here")
            capped = await client.post(
                "/v1/channels/telegram/00000000-0000-4000-8000-000000000000/webhook",
                content=b"x" * (settings.max_body_bytes * 4 + 1))
    assert odd.status_code == 422 and odd.json()["error"]["code"] == "validation_error"
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert capped.status_code == 413


DOCS = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")


async def test_the_documentation_routes_come_last_and_answer(settings: Settings) -> None:
    async with local_app(settings) as local:
        assert [getattr(r, "path", None) for r in local.app.routes[-len(DOCS):]] == list(DOCS)
        assert not any(getattr(r, "path", None) in DOCS
                       for r in local.app.routes[:-len(DOCS)])
        assert not local.app._native_telemetry.enabled()  # BIDI_OTEL is off
        async with local.client() as client:
            pages = {path: await client.get(path) for path in DOCS}
    assert all(page.status_code == 200 for page in pages.values())
    assert pages["/openapi.json"].json()["info"]["title"] == "Bidi"
    assert "swagger-ui" in pages["/docs"].text and "redoc" in pages["/redoc"].text
    assert "oauth2" in pages["/docs/oauth2-redirect"].text.lower()


async def test_a_fast_routes_bug_is_a_logged_500_with_the_envelope(
        caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> Any:
        raise RuntimeError("a bug")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "POST", "path": "/v1/channels/api/x/messages",
             "headers": []}
    with caplog.at_level(logging.ERROR, logger="serve.errors"):
        await _answer(broken(), scope, receive, send)
    assert sent[0]["status"] == 500
    assert json.loads(sent[1]["body"]) == {
        "error": {"code": "internal_error", "message": "internal error", "details": None}}
    assert "unhandled error on POST /v1/channels/api/x/messages" in caplog.text
    assert "RuntimeError: a bug" in caplog.text
