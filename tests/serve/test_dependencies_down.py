"""Errors of what the API depends on, answered in-process by the real app:
Redis down is 503 with Retry-After (never 500), and a database constraint
violation is 409 without the database's DETAIL (which quotes the row)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request

from core.settings import Settings
from serve.app import build_app
from serve.stack import free_port
from tests.conftest import Account


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bidi") as client:
            yield client


def _unavailable(resp: httpx.Response) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["code"] == "unavailable"
    assert int(resp.headers["retry-after"]) >= 1


async def test_redis_down_is_503(settings: Settings, owner: Account) -> None:
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    async with serving(build_app(dead)) as client:
        # The fast path (contact list) and a FastAPI route both take from the
        # rate limiter in Redis; sign-in reads its failure counters there.
        _unavailable(await client.get("/v1/contacts", headers=owner.headers))
        _unavailable(await client.get("/v1/companies", headers=owner.headers))
        _unavailable(await client.post("/v1/auth/login", json={
            "email": owner.email, "password": owner.password}))


async def test_constraint_violation_has_no_detail(settings: Settings, owner: Account) -> None:
    app = build_app(settings)

    @app.post("/test/duplicate-user")
    async def duplicate_user(request: Request) -> None:
        async with request.app.state.runtime.db.system_tx() as conn:
            await conn.execute("INSERT INTO users (email, password_hash, name)"
                               " VALUES ($1, 'x', 'x')", owner.email.upper())

    async with serving(app) as client:
        resp = await client.post("/test/duplicate-user")
    assert resp.status_code == 409, resp.text
    error = resp.json()["error"]
    assert error["code"] == "conflict"
    assert error["details"] == {"constraint": "uq_users_email_lower"}
    assert owner.email not in resp.text.lower() and "Key (" not in resp.text
