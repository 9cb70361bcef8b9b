"""An actor host and the event relay started while Postgres is unreachable
(as when Ray restarts them during an outage) keep trying, with a backoff,
and are up once Postgres is reachable again; meanwhile the host fails calls
fast and retryably, and the relay says it is starting.

Postgres is made unreachable for real: the parts are pointed at a socket
directory where nothing listens, and then the server's socket is linked
into it."""
from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis

from actors.relay import RelayActor, cursor_key
from actors.runtime.remote import ActorHost
from core.errors import Unavailable
from core.settings import Settings
from storage.db import Database
from tests.waiting import eventually


class Outage:
    """A Postgres socket directory that is empty until `end()`."""

    def __init__(self, settings: Settings) -> None:
        assert settings.database_url is not None
        parts = urlsplit(settings.database_url)
        query = dict(parse_qsl(parts.query))
        self.real = Path(query["host"]) / f".s.PGSQL.{parts.port or 5432}"
        assert self.real.exists()
        self.dir = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
        query["host"] = str(self.dir)
        self.settings = settings.model_copy(update={
            "database_url": urlunsplit(parts._replace(query=urlencode(query)))})

    def end(self) -> None:
        (self.dir / self.real.name).symlink_to(self.real)

    def remove(self) -> None:
        for entry in self.dir.iterdir():
            entry.unlink()
        self.dir.rmdir()


@pytest.fixture
def outage(settings: Settings) -> Iterator[Outage]:
    found = Outage(settings)
    yield found
    found.remove()


async def _answers(host: ActorHost) -> bool:
    try:
        return await host.ping() == host.index
    except Unavailable:
        return False


async def test_a_host_retries_its_start_until_postgres_is_reachable(
        outage: Outage, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="actors.runtime.startup")
    host = ActorHost(5, outage.settings)
    try:
        with pytest.raises(Unavailable, match="actor host 5 is not started"):
            await host.ping()  # the first attempt failed: fast, retryable
        assert host.host is None  # nothing half-open (test_lifespan checks it is all closed)
        assert "actor host 5: start attempt 1 failed" in caplog.text
        outage.end()
        await eventually(lambda: _answers(host), what="the host's start")
        stats = await host.stats()
        assert stats["index"] == 5 and "commits" in stats
        assert host.host is not None and host.host.ctx.db.app is not None
        async with host.host.ctx.db.app.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await host.shutdown()


async def _tail(db: Database) -> str:
    assert db.system is not None
    row = await db.system.fetchrow(
        "SELECT xid::text AS xid, seq FROM events ORDER BY xid DESC, seq DESC LIMIT 1")
    return f"{row['xid']}:{row['seq']}" if row else "0:0"


async def test_the_relay_retries_its_start_until_postgres_is_reachable(
        outage: Outage, settings: Settings, db: Database,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="actors.runtime.startup")
    name = f"test-{uuid.uuid4().hex[:8]}"
    redis = aioredis.Redis.from_url(settings.redis_url)
    # Start at the end of the log: this relay must not publish old events again.
    await redis.set(cursor_key(name), await _tail(db))
    relay = RelayActor(outage.settings, name=name)
    try:
        await eventually(lambda: "start attempt 2 failed" in caplog.text,
                         what="a second failed attempt")
        status = relay.status()
        assert status["state"] == "starting" and status["running"] is False
        assert status["attempts"] >= 2 and "starting" in status["problem"]
        assert relay.relay.db is None and relay.relay.redis is None  # nothing half-open
        outage.end()
        await relay.ping()  # waits until it is up
        status = relay.status()
        assert status["state"] == "running" and status["problem"] is None
        assert status["cursor"] == [int(p) for p in (await redis.get(cursor_key(name)))
                                    .decode().split(":")]
    finally:
        await relay.shutdown()
        await redis.delete(cursor_key(name))
        await redis.aclose()
        assert db.system is not None
        await db.system.execute("DELETE FROM relay_cursors WHERE name = $1", name)
