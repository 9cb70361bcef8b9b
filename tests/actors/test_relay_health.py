"""The relay's own view of whether it keeps up (what `/readyz` reports):
stalled when committed events wait beyond its cursor and it has not moved
for `stall_after` seconds, as behind an old open transaction that holds the
commit fence; fine again once the events can be read."""
from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from actors.relay import EventRelay, cursor_key
from core.settings import Settings
from storage.db import Database
from tests.conftest import Org
from tests.waiting import eventually

EVENT = ("INSERT INTO events (organization_id, event_type, entity_type, payload)"
         " VALUES ($1, 'test.held', 'test', '{}') RETURNING seq")


async def test_the_relay_is_stalled_while_events_wait_behind_an_open_transaction(
        settings: Settings, db: Database, org: Org) -> None:
    assert db.system is not None
    name = f"test-{uuid.uuid4().hex[:8]}"
    redis = aioredis.Redis.from_url(settings.redis_url)
    tail = await db.system.fetchrow(
        "SELECT xid::text AS xid, seq FROM events ORDER BY xid DESC, seq DESC LIMIT 1")
    await redis.set(cursor_key(name), f"{tail['xid']}:{tail['seq']}" if tail else "0:0")
    relay = EventRelay(settings, name=name, stall_after=0.5)
    await relay.start()
    try:
        await eventually(lambda: relay.status()["behind_seconds"] < 0.5, what="caught up")
        assert relay.status()["problem"] is None
        async with db.system.acquire() as holder:
            fence = holder.transaction()
            await fence.start()
            await holder.fetchval("SELECT pg_current_xact_id()")  # an open, older xid
            seq = await db.system.fetchval(EVENT, org.id)  # committed, yet behind it
            status = await eventually(lambda: relay.status()["problem"] and relay.status(),
                                      what="the relay reported stalled")
            assert "cursor has not moved" in status["problem"]
            assert status["running"] is True and status["behind_seconds"] > 0.5
            await fence.rollback()
        held_xid = await db.system.fetchval(
            "SELECT xid::text::bigint FROM events WHERE seq = $1", seq)
        # Fine again as soon as the fence is gone; the held event follows.
        await eventually(lambda: relay.status()["problem"] is None, what="moving again")
        await eventually(lambda: relay.cursor[0] >= held_xid, what="the held event read")
        assert relay.published >= 1
    finally:
        await relay.stop()
        await redis.delete(cursor_key(name))
        await redis.aclose()
        await db.system.execute("DELETE FROM relay_cursors WHERE name = $1", name)
