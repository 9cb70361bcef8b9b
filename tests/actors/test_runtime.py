"""The actor runtime on the session's real Ray hosts."""
from __future__ import annotations

import asyncio
import os
import signal
import uuid

import pytest
import ray
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.messages import GetState
from actors.org import RecordUsage
from actors.runtime.client import NAMESPACE, ActorSystem, host_name
from actors.runtime.protocol import TurnError
from actors.runtime.retry import RetryPolicy
from core.errors import Unavailable
from core.settings import Settings
from storage.db import Database
from tests.actors.kinds import Append, Boom, GetLog, Persist, Rendezvous, SlowAppend
from tests.conftest import Org


def host(index: int):  # type: ignore[no-untyped-def]
    return ray.get_actor(host_name(index), namespace=NAMESPACE)


async def test_ask_returns_the_turn_result_and_raises_its_error(actors: ActorSystem) -> None:
    ref = actors.ref("recorder", uuid.uuid4(), uuid.uuid4())
    assert await ref.ask(Append("a", 1)) == 1
    with pytest.raises(TurnError, match="ValueError: kaboom"):
        await ref.ask(Boom("kaboom"))
    assert await ref.ask(GetLog()) == [("a", 1)]


async def test_an_ask_not_answered_in_time_fails_and_its_turn_runs_on(
        actors: ActorSystem) -> None:
    org, name = uuid.uuid4(), uuid.uuid4().hex
    waiting = actors.ref("recorder", org, uuid.uuid4())
    async with asyncio.timeout(10):
        with pytest.raises(Unavailable, match="did not answer within 0.2 s"):
            await waiting.ask(Rendezvous(name, 2), timeout=0.2)  # nobody else comes yet
        # The turn still waits: a second actor's meets it, and both end.
        assert await actors.ref("recorder", org, uuid.uuid4()).ask(Rendezvous(name, 2))
        assert await waiting.ask(GetLog()) == []


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.booleans()),
                     min_size=1, max_size=120))
async def test_per_actor_order_under_concurrent_senders(
        settings: Settings, plan: list[tuple[int, int, bool]]) -> None:
    """Four senders (two processes' worth of streams) send to three actors;
    every actor sees each sender's messages in the order that sender sent them."""
    org = str(uuid.uuid4())
    keys = [str(uuid.uuid4()) for _ in range(3)]
    systems = [ActorSystem(settings.hosts), ActorSystem(settings.hosts)]
    per_sender: dict[int, list[tuple[int, bool]]] = {s: [] for s in range(4)}
    for sender, target, slow in plan:
        per_sender[sender].append((target, slow))

    async def send(sender: int) -> None:
        system = systems[sender % 2]
        for n, (target, slow) in enumerate(per_sender[sender]):
            message = SlowAppend(str(sender), n) if slow else Append(str(sender), n)
            await system.tell("recorder", org, keys[target], message)
            if n % 7 == 3:
                await asyncio.sleep(0)  # interleave the senders

    await asyncio.gather(*(send(s) for s in per_sender))
    seen = 0
    for key in keys:
        log = await systems[0].ask("recorder", org, key, GetLog())
        seen += len(log)
        for sender in per_sender:
            ns = [n for s, n in log if s == str(sender)]
            assert ns == sorted(ns)
    assert seen == len(plan)
    for system in systems:
        await system.close()


async def test_actors_run_in_parallel(actors: ActorSystem) -> None:
    """Eight turns that can only finish if all eight are running at once."""
    org, name = str(uuid.uuid4()), uuid.uuid4().hex
    answers = await asyncio.gather(*(
        actors.ask("recorder", org, str(uuid.uuid4()), Rendezvous(name, 8), timeout=20)
        for _ in range(8)))
    assert answers == [True] * 8


async def test_tell_is_acknowledged_then_runs(actors: ActorSystem) -> None:
    ref = actors.ref("recorder", uuid.uuid4(), uuid.uuid4())
    acks = [ref.tell(Append("t", n)) for n in range(500)]
    assert await asyncio.gather(*acks) == [None] * 500
    assert len(await ref.ask(GetLog())) == 500


async def test_passivation_and_reactivation_keep_persisted_state(
        actors: ActorSystem, db: Database, org: Org) -> None:
    ref = actors.ref("org", org.id, org.id)
    for _ in range(3):
        await ref.ask(RecordUsage("messages_sent", 2))
    state = await ref.ask(GetState())
    assert state["usage"] == {"messages_sent": 6} and state["plan"] == "free"
    owner = host(actors.owner("org", str(org.id)))
    before = await owner.stats.remote()
    await owner.drain.remote()  # passivates every resident actor, flushing state
    after = await owner.stats.remote()
    assert after["passivations"]["org"] > before["passivations"].get("org", 0)
    assert after["resident"]["org"] == 0
    async with db.tenant_tx(org.id) as conn:
        assert await conn.fetchval(
            "SELECT sum(quantity) FROM usage_logs WHERE metric_type = 'messages_sent'") == 6
    state = await ref.ask(GetState())  # a new activation, loaded from Postgres
    assert state["usage"] == {"messages_sent": 6} and state["unflushed"] == {}
    stats = await owner.stats.remote()
    assert stats["activations"]["org"] > before["activations"]["org"]


async def test_missing_chat_is_not_found(actors: ActorSystem, org: Org) -> None:
    from core.errors import NotFound

    with pytest.raises(NotFound):
        await actors.ask("chat", str(org.id), str(uuid.uuid4()), GetState())


async def test_host_killed_under_traffic_loses_no_acknowledged_write(
        actors: ActorSystem, db: Database, org: Org) -> None:
    victim_index = 0
    victim = host(victim_index)
    old_pid = await victim.pid.remote()
    keys = [str(uuid.uuid4()) for _ in range(40)]
    owned = [k for k in keys if actors.owner("recorder", k) == victim_index]
    assert owned, "some actors must live on the host we kill"
    acknowledged: list[str] = []
    failures_seen = 0
    killed = asyncio.Event()

    async def writer(worker: int) -> None:
        nonlocal failures_seen
        for n in range(60):
            value = f"{worker}-{n}"
            key = keys[(worker + n) % len(keys)]

            async def once(timeout: float, key: str = key, value: str = value) -> str:
                nonlocal failures_seen
                try:
                    return await actors.ask("recorder", str(org.id), key, Persist(value),
                                            timeout)
                except Exception:
                    failures_seen += 1
                    raise

            acknowledged.append(await RetryPolicy(budget=60).run(once, idempotent=True))
            if worker == 0 and n == 15:
                os.kill(old_pid, signal.SIGKILL)
                killed.set()

    await asyncio.gather(*(writer(w) for w in range(8)))
    assert killed.is_set()
    async with db.tenant_tx(org.id) as conn:
        rows = await conn.fetch(
            "SELECT payload->>'value' AS v FROM events WHERE event_type = 'test.persisted'")
    stored = {r["v"] for r in rows}
    assert set(acknowledged) <= stored
    assert len(acknowledged) == 8 * 60
    new_pid = await victim.pid.remote()
    assert new_pid != old_pid
    assert await victim.ping.remote() == victim_index
