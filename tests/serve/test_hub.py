"""The replica's hub on a real Redis: subscriptions confirmed however often
the topic count falls to zero and back, events to every connection on a
topic, and a pub/sub connection that breaks or goes silent is never quietly
replaced: every live connection is closed 1012 (its client resumes with
`since`) and the next subscribe opens a new line."""
from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from core.errors import Unavailable
from serve.errors import Close
from serve.hub import Hub, Live
from storage.embedded import EmbeddedRedis
from storage.pubsub import Subscriber
from storage.revocations import Revocations, revoke_sessions
from tests.waiting import eventually


class Conn:
    """What a WebSocket would have seen: frames sent, and how it was closed."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.live = Live(send=self._send, close=self._close, org_id="org")

    async def _send(self, text: str) -> None:
        self.sent.append(text)

    async def _close(self, code: int, why: str) -> None:
        self.closed = (code, why)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of these tests' own: they pause it and kill its clients."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("hub-redis"))
    yield server.start()
    server.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    # Health checks due at every command: what made redis-py's PubSub read
    # beside the hub's reader.
    client = aioredis.Redis.from_url(redis_url, health_check_interval=0.01)
    yield client
    await client.aclose()


def _event(seq: int) -> str:
    return json.dumps({"type": "event", "xid": 1, "seq": seq, "event_type": "test.hub",
                       "data": {"n": seq}})


async def test_subscriptions_are_confirmed_as_topics_come_and_go(
        redis: aioredis.Redis) -> None:
    hub = Hub(redis, confirm_within=5.0)
    try:
        for round_ in range(30):  # the topic count falls to zero between rounds
            a, b = Conn(), Conn()
            topic = f"test:hub:{uuid.uuid4().hex}"
            await hub.join(a.live, topic)
            await hub.join(b.live, topic)
            await redis.publish(topic, _event(round_ + 1))
            await eventually(lambda: a.sent and b.sent, what="the event on both")  # noqa: B023
            assert a.sent == b.sent and json.loads(a.sent[0])["seq"] == round_ + 1
            await hub.leave(a.live)
            await hub.leave(b.live)
            assert not hub.listeners
        assert hub.resets == 0
    finally:
        await hub.close()


async def test_an_orgs_batch_then_its_chat_copies_reach_each_connection_once_in_order(
        redis: aioredis.Redis) -> None:
    # What the relay publishes for one read: the org topic's events as one
    # JSON array, then each event on its chat topic.
    hub = Hub(redis, confirm_within=5.0)
    org, chat = f"test:hub:org:{uuid.uuid4().hex}", f"test:hub:chat:{uuid.uuid4().hex}"
    both, org_only, chat_only = Conn(), Conn(), Conn()
    try:
        for conn, topics in ((both, (org, chat)), (org_only, (org,)), (chat_only, (chat,))):
            for topic in topics:
                await hub.join(conn.live, topic)
        await redis.publish(org, "[" + ",".join(_event(n) for n in (1, 2, 3)) + "]")
        for n in (1, 3):  # events 1 and 3 are of this chat
            await redis.publish(chat, _event(n))
        await redis.publish(org, _event(4))  # a later read's lone event: no array
        await eventually(lambda: len(org_only.sent) == 4 and len(chat_only.sent) == 2,
                         what="every frame")
        await eventually(lambda: len(both.sent) == 4, what="every frame on both topics")
        seqs = {name: [json.loads(t)["seq"] for t in conn.sent]
                for name, conn in (("both", both), ("org", org_only), ("chat", chat_only))}
        assert seqs == {"both": [1, 2, 3, 4], "org": [1, 2, 3, 4], "chat": [1, 3]}
        assert hub.received == 6 and hub.resets == 0  # frames, the batch split
    finally:
        await hub.close()


async def test_a_killed_line_closes_every_connection_and_the_next_subscribe_reconnects(
        redis: aioredis.Redis) -> None:
    hub = Hub(redis, confirm_within=5.0)
    try:
        conns = [Conn() for _ in range(3)]
        topic = f"test:hub:{uuid.uuid4().hex}"
        for conn in conns:
            await hub.join(conn.live, topic)
        killed = await redis.client_kill_filter(_type="pubsub")
        assert killed >= 1
        for conn in conns:
            await eventually(lambda: conn.closed, what="the 1012 close")  # noqa: B023
            assert conn.closed is not None and conn.closed[0] == Close.RESTARTING
            assert "resume with since=" in conn.closed[1]
        assert hub.resets == 1 and not hub.listeners
        # Nothing was resubscribed behind our back: a new subscribe, a new line.
        fresh = Conn()
        await hub.join(fresh.live, topic)
        await redis.publish(topic, _event(7))
        await eventually(lambda: fresh.sent, what="the event after reconnecting")
        assert all(not conn.sent for conn in conns)
    finally:
        await hub.close()


async def test_a_silent_line_is_declared_lost(redis: aioredis.Redis) -> None:
    lost: list[Exception] = []
    sub = await Subscriber.open(redis, lambda *_: None, lost.append,
                                ping_every=0.2, dead_after=0.6)
    try:
        await sub.subscribe("test:hub:silent")
        await redis.execute_command("CLIENT", "PAUSE", "3000", "ALL")
        await eventually(lambda: lost, timeout=5, what="the lost line")
        assert not sub.alive and "no answer" in str(lost[0])
        with pytest.raises(ConnectionError):
            await sub.subscribe("test:hub:after")
    finally:
        await redis.execute_command("CLIENT", "UNPAUSE")
        await sub.close()


async def test_a_subscribe_redis_never_confirms_is_unavailable_not_a_hang(
        redis: aioredis.Redis) -> None:
    hub = Hub(redis, confirm_within=0.5)
    try:
        conn = Conn()
        await hub.join(conn.live, f"test:hub:{uuid.uuid4().hex}")  # opens the line
        await redis.execute_command("CLIENT", "PAUSE", "3000", "ALL")
        late = Conn()
        with pytest.raises(Unavailable):
            await hub.join(late.live, f"test:hub:{uuid.uuid4().hex}")
        await redis.execute_command("CLIENT", "UNPAUSE")
        # The line was reset: the first connection was told to resume.
        await eventually(lambda: conn.closed, what="the 1012 close")
        assert conn.closed is not None and conn.closed[0] == Close.RESTARTING
        again = Conn()
        await hub.join(again.live, f"test:hub:{uuid.uuid4().hex}")
        assert not hub.listeners.keys() - set(again.live.topics)
    finally:
        await redis.execute_command("CLIENT", "UNPAUSE")
        await hub.close()


async def test_revocations_outlive_a_killed_line(redis: aioredis.Redis) -> None:
    async with Revocations(redis) as revocations:
        await asyncio.wait_for(revocations.ready.wait(), 10)
        org, user = str(uuid.uuid4()), str(uuid.uuid4())
        assert await redis.client_kill_filter(_type="pubsub") >= 1
        # Published while the line is down or coming back: the reload has it.
        at = await revoke_sessions(redis, org, user, "removed")
        await eventually(lambda: revocations.revoked(org, user, at), what="the revocation")
        # And the new line carries notices again.
        other = str(uuid.uuid4())
        later = await revoke_sessions(redis, org, other, "demoted")
        await eventually(lambda: revocations.revoked(org, other, later),
                         what="a notice on the new line")
