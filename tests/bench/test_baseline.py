"""The conventional baseline service (bench/baseline.py) against the session's
real Postgres and Redis: it answers like the engine's API channel and
publishes every new message once."""
from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from bench.baseline import CHANNEL, run_baseline
from channels import signing
from core.settings import Settings
from serve.stack import free_port
from tests.waiting import eventually

SECRET = signing.new_secret()


@pytest.fixture(scope="module")
def baseline(settings: Settings) -> Iterator[str]:
    assert settings.database_url is not None and settings.redis_url is not None
    with run_baseline(settings.database_url, settings.redis_url, SECRET, port=free_port(),
                      pool_size=2) as url:
        yield url


@pytest.fixture
async def client(baseline: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=baseline, timeout=10) as http:
        yield http


@pytest.fixture
async def owner_db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    assert settings.database_url is not None
    conn = await asyncpg.connect(settings.database_url)
    yield conn
    await conn.close()


def message(external_id: str, text: str = "hello") -> bytes:
    return json.dumps({"external_message_id": external_id, "thread_id": "chat-1",
                       "sender": {"id": "c-1", "name": "Ada"}, "text": text}).encode()


async def post(client: httpx.AsyncClient, body: bytes, secret: str = SECRET) -> httpx.Response:
    headers = signing.headers(secret, "msg_" + uuid.uuid4().hex, body)
    headers["Content-Type"] = "application/json"
    return await client.post(f"/v1/channels/api/{uuid.uuid4()}/messages", content=body,
                             headers=headers)


async def rows(db: asyncpg.Connection, external_id: str) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM bench_baseline.messages WHERE external_id = $1", external_id)
    return count


async def test_health(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200


async def test_signed_message_is_stored_and_published_once(
        client: httpx.AsyncClient, owner_db: asyncpg.Connection, settings: Settings) -> None:
    assert settings.redis_url is not None
    bus = redis.Redis.from_url(settings.redis_url)
    sub = bus.pubsub()
    await sub.subscribe(CHANNEL)
    frames: list[dict[str, Any]] = []
    external = uuid.uuid4().hex
    text = f"t={uuid.uuid4().hex} verbatim ünïcode"
    try:
        resp = await post(client, message(external, text))
        assert resp.status_code == 202, resp.text
        first = resp.json()
        assert first["duplicate"] is False
        assert await rows(owner_db, external) == 1

        async def frame() -> dict[str, Any] | None:
            got = await sub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if got is not None:
                frames.append(json.loads(got["data"]))
            return next((f for f in frames if f["id"] == first["id"]), None)

        assert await eventually(frame, timeout=10, what="the published frame") == {
            "id": first["id"], "thread_id": "chat-1", "text": text}

        again = await post(client, message(external, text))
        assert again.status_code == 202, again.text
        assert again.json() == {"id": first["id"], "duplicate": True}
        assert await rows(owner_db, external) == 1
    finally:
        await sub.aclose()
        await bus.aclose()


async def test_forged_signature_is_refused(client: httpx.AsyncClient,
                                           owner_db: asyncpg.Connection) -> None:
    external = uuid.uuid4().hex
    resp = await post(client, message(external), secret=signing.new_secret())
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthorized"
    assert await rows(owner_db, external) == 0


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    resp = await post(client, b'{"external_message_id": ')
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "malformed_json"


async def test_missing_field_is_422(client: httpx.AsyncClient,
                                    owner_db: asyncpg.Connection) -> None:
    external = uuid.uuid4().hex
    body = json.dumps({"external_message_id": external, "thread_id": "chat-1",
                       "sender": {"id": "c-1"}}).encode()
    resp = await post(client, body)
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "invalid"
    assert await rows(owner_db, external) == 0
