"""An actor host's one lifespan: what its start opens is closed when the
start fails halfway and when the host shuts down, HTTP clients included;
its turns see a complete context.

Redis connections are seen from the server's side (`CLIENT LIST`, by a
client name given in the host's REDIS_URL), pools and clients by their own
state."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis

from actors.runtime.remote import ActorHost, open_context
from channels.base import sender_for
from core.errors import StartupError
from core.settings import Settings
from tests.actors.kinds import TEST_KINDS
from tests.actors.test_startup import Outage
from tests.waiting import eventually


def named(settings: Settings, name: str) -> Settings:
    """`settings` whose Redis connections carry `name` (CLIENT SETNAME)."""
    assert settings.redis_url is not None
    parts = urlsplit(settings.redis_url)
    query = [*parse_qsl(parts.query), ("client_name", name)]
    return settings.model_copy(update={
        "redis_url": urlunsplit(parts._replace(query=urlencode(query)))})




async def connections(redis: aioredis.Redis, name: str) -> int:
    return sum(1 for client in await redis.client_list() if client.get("name") == name)


@pytest.fixture
def outage(settings: Settings) -> Iterator[Outage]:
    found = Outage(settings)
    yield found
    found.remove()


async def test_a_start_that_fails_halfway_closes_what_it_opened(
        outage: Outage, redis: aioredis.Redis) -> None:
    name = f"host-{uuid.uuid4().hex[:8]}"
    # Redis is up, Postgres is not: the start fails after Redis was opened.
    with pytest.raises(StartupError, match="cannot open pools"):
        async with open_context(3, named(outage.settings, name)):
            raise AssertionError("the context must not open without Postgres")
    await eventually(lambda: _none(redis, name), what="the failed start's Redis closing")


async def _none(redis: aioredis.Redis, name: str) -> bool:
    return await connections(redis, name) == 0


async def test_shutdown_closes_every_resource_the_host_opened(
        settings: Settings, redis: aioredis.Redis) -> None:
    name = f"host-{uuid.uuid4().hex[:8]}"
    host = ActorHost(6, named(settings, name), TEST_KINDS)
    try:
        assert await host.ping() == 6
        assert host.host is not None
        ctx = host.host.ctx
        # a complete context: nothing a turn uses is missing
        assert ctx.settings.redis_url is not None and ctx.db.app is not None
        assert ctx.committer is not None and ctx.system is not None
        api = sender_for(ctx, "api")  # the sender opened with the host, not a new one
        assert api is ctx.loaders["sender:api"]
        client = api.client  # type: ignore[attr-defined]
        assert not client.is_closed
        telegram = sender_for(ctx, "telegram")  # made on demand, with its Bot API clients
        telegram.bot(f"123:{'a' * 35}")  # type: ignore[attr-defined]
        requests = list(telegram._requests)  # type: ignore[attr-defined]
        for request in requests:
            await request.initialize()
        assert requests and not any(r._client.is_closed for r in requests)
        assert await connections(redis, name) >= 1
        db = ctx.db
    finally:
        await host.shutdown()
    assert host.host is None
    assert client.is_closed
    assert all(r._client.is_closed for r in requests)  # closed with the host
    assert db.app is None and db.system is None
    await eventually(lambda: _none(redis, name), what="the host's Redis closing")
    with pytest.raises(Exception, match="shut down"):
        await host.ping()
