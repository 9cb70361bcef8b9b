"""The org, chat and agent actors on the real hosts: load, hold, flush, answer."""
from __future__ import annotations

import uuid

import pytest

from actors.agent import FinishRun, StartRun
from actors.messages import GetState, Ping
from actors.org import RecordUsage
from actors.runtime.client import ActorSystem
from core.errors import Invalid, NotFound, RateLimited
from storage.db import Database
from tests.conftest import Org
from tests.waiting import eventually


async def test_chat_actor_loads_its_conversation(actors: ActorSystem, db: Database,
                                                 org: Org) -> None:
    async with db.tenant_tx(org.id) as conn:
        contact = await conn.fetchval(
            "INSERT INTO contacts (organization_id, first_name) VALUES ($1, 'Ada') RETURNING id",
            org.id)
        chat = await conn.fetchval(
            "INSERT INTO chats (organization_id, contact_id, channel, channel_thread_id,"
            " last_inbound_at, metadata) VALUES ($1, $2, 'telegram', '42', now(),"
            " '{\"assigned_agent_id\": \"a-1\"}') RETURNING id", org.id, contact)
        for n in range(25):
            await conn.execute(
                "INSERT INTO messages (chat_id, organization_id, sender_type, content,"
                " is_incoming, is_read, created_at) VALUES ($1, $2, 'contact', $3, true, $4,"
                " now() + $5 * interval '1 second')", chat, org.id, f"m{n}", n < 20, n)
    state = await actors.ask("chat", str(org.id), str(chat), GetState())
    assert state["contact_id"] == str(contact)
    assert state["channel"] == "telegram" and state["thread_id"] == "42"
    assert state["unread"] == 5
    assert state["assigned_agent_id"] == "a-1"
    assert state["last_inbound_at"] is not None
    assert [m["content"] for m in state["recent"]] == [f"m{n}" for n in range(5, 25)]
    assert await actors.ask("chat", str(org.id), str(chat), Ping()) == 1


async def test_chat_of_another_org_is_not_found(actors: ActorSystem, db: Database,
                                                org: Org) -> None:
    async with db.tenant_tx(org.id) as conn:
        chat = await conn.fetchval(
            "INSERT INTO chats (organization_id, channel) VALUES ($1, 'api') RETURNING id", org.id)
    with pytest.raises(NotFound):  # RLS: the other org's context sees no such chat
        await actors.ask("chat", str(uuid.uuid4()), str(chat), GetState())


async def test_bad_chat_key_is_invalid(actors: ActorSystem, org: Org) -> None:
    with pytest.raises(Invalid):
        await actors.ask("chat", str(org.id), "not-a-uuid", GetState())


async def test_agent_actor_limits_concurrent_runs(actors: ActorSystem, db: Database,
                                                  org: Org) -> None:
    async with db.tenant_tx(org.id) as conn:
        agent = await conn.fetchval(
            "INSERT INTO ai_agents (organization_id, name, type, prompt_template, guardrails)"
            " VALUES ($1, 'SDR', 'sdr', 'Be brief.', '{\"max_concurrent_runs\": 2}')"
            " RETURNING id", org.id)
    ref = actors.ref("agent", org.id, agent)
    state = await ref.ask(GetState())
    assert state["config"]["name"] == "SDR" and state["max_runs"] == 2
    assert await ref.ask(StartRun("r1")) == 1
    assert await ref.ask(StartRun("r2")) == 2
    with pytest.raises(RateLimited):
        await ref.ask(StartRun("r3"))
    assert await ref.ask(FinishRun("r1")) == 1
    assert await ref.ask(StartRun("r3")) == 2
    assert (await ref.ask(GetState()))["running"] == ["r2", "r3"]


async def test_org_actor_flushes_usage_periodically(actors: ActorSystem, db: Database,
                                                    org: Org) -> None:
    async with db.tenant_tx(org.id) as conn:
        await conn.execute(
            "INSERT INTO subscriptions (organization_id, plan) VALUES ($1, 'pro')", org.id)
    ref = actors.ref("org", org.id, org.id)
    assert await ref.ask(RecordUsage("ai_calls", 3)) == 3
    state = await ref.ask(GetState())
    assert state["plan"] == "pro" and state["limits"]["ai_calls"] == 5_000
    with pytest.raises(Invalid):
        await ref.ask(RecordUsage("ai_calls", 0))
    async def flushed() -> bool:
        async with db.tenant_tx(org.id) as conn:
            return await conn.fetchval(
                "SELECT sum(quantity) FROM usage_logs WHERE metric_type = 'ai_calls'") == 3

    await eventually(flushed, what="the usage flush")
    assert (await ref.ask(GetState()))["unflushed"] == {}
