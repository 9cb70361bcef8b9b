"""Typed references on the session's real hosts: one retry policy for every
call site (bounded in time, only "not now" errors, only calls that may run
twice, except a full mailbox, which refuses before the actor sees it)."""
from __future__ import annotations

import asyncio
import os
import random
import signal
import uuid

import pytest
import ray

from actors.refs import AgentRef, ChatRef, OrgRef
from actors.runtime.client import NAMESPACE, ActorSystem, host_name
from actors.runtime.protocol import MailboxFull
from actors.runtime.retry import RetryPolicy
from core.errors import Invalid, NotFound, RateLimited, Unavailable
from core.messages import InboundMessage, Sender
from storage.db import Database
from tests.actors.kinds import FlakyRef
from tests.conftest import Org

QUICK = RetryPolicy(budget=1.0)


def flaky(actors: ActorSystem, policy: RetryPolicy = QUICK) -> FlakyRef:
    return FlakyRef(actors, str(uuid.uuid4()), str(uuid.uuid4()), policy)


@pytest.mark.parametrize("error", ["unavailable", "mailbox_full"])
async def test_an_idempotent_call_is_retried_until_it_succeeds(
        actors: ActorSystem, error: str) -> None:
    ref = flaky(actors, RetryPolicy(budget=10.0))
    assert await ref.flake("t", 3, error, idempotent=True) == 4  # three failures, then done
    assert await ref.attempts("t") == 4


async def test_a_full_mailbox_is_retried_even_for_a_call_that_may_not_run_twice(
        actors: ActorSystem) -> None:
    ref = flaky(actors, RetryPolicy(budget=10.0))
    assert await ref.flake("t", 2, "mailbox_full", idempotent=False) == 3


async def test_a_call_that_may_not_run_twice_is_not_retried_when_unavailable(
        actors: ActorSystem) -> None:
    ref = flaky(actors)
    with pytest.raises(Unavailable, match="attempt 1 fails"):
        await ref.flake("t", 1, "unavailable", idempotent=False)
    assert await ref.attempts("t") == 1


@pytest.mark.parametrize(("error", "raised"), [("invalid", Invalid), ("not_found", NotFound)])
async def test_an_answer_is_never_retried(actors: ActorSystem, error: str,
                                          raised: type[Exception]) -> None:
    ref = flaky(actors)
    with pytest.raises(raised, match="attempt 1 fails"):
        await ref.flake("t", 1, error, idempotent=True)
    assert await ref.attempts("t") == 1


@pytest.mark.parametrize("error", ["unavailable", "mailbox_full"])
async def test_retries_end_within_the_budget_with_the_last_error(
        actors: ActorSystem, error: str) -> None:
    ref = flaky(actors, RetryPolicy(budget=1.5))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Unavailable, match="fails") as caught:
        await ref.flake("t", 10**6, error, idempotent=True)
    elapsed = loop.time() - started
    assert 0.5 < elapsed <= 1.5 + 0.5  # stopped by the budget, not by an attempt limit
    assert isinstance(caught.value, MailboxFull) == (error == "mailbox_full")
    attempts = await ref.attempts("t")
    assert 4 <= attempts <= 20  # backed off: not a busy loop


def test_pauses_grow_exponentially_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(first_delay=0.1, max_delay=1.0, jitter=0.5)
    rng = random.Random(7)
    for retry, ceiling in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0]):
        pauses = {policy.pause(retry, rng) for _ in range(50)}
        assert all(ceiling * 0.5 <= p <= ceiling for p in pauses)
        assert len(pauses) > 1  # jittered


async def _integration(db: Database, org: Org) -> str:
    async with db.tenant_tx(org.id) as conn:
        return str(await conn.fetchval(
            "INSERT INTO integrations (organization_id, type, name, config)"
            " VALUES ($1, 'api', 'refs', '{}') RETURNING id", org.id))


def _message(org: Org, integration_id: str, external_id: str) -> InboundMessage:
    return InboundMessage(
        organization_id=str(org.id), integration_id=integration_id, channel="api",
        thread_id="thread-1", external_id=external_id, sender=Sender(id="s-1", name="Ada"),
        text=f"hello {external_id}")


async def test_chat_ref_reaches_the_chat_a_message_belongs_to(
        actors: ActorSystem, db: Database, org: Org) -> None:
    message = _message(org, await _integration(db, org), "m-1")
    chat = ChatRef.of(actors, message)
    accepted = await chat.inbound(message)
    assert accepted["chat_id"] == chat.chat_id and accepted["duplicate"] is False
    again = await chat.inbound(message)
    assert again == {**accepted, "duplicate": True}
    assert (await chat.state())["unread"] == 1
    assert await chat.mark_read(None) == {"chat_id": chat.chat_id, "unread": 0, "changed": True}
    assert (await chat.mark_read(None))["changed"] is False


async def test_an_inbound_message_survives_its_host_being_killed(
        actors: ActorSystem, db: Database, org: Org) -> None:
    integration = await _integration(db, org)
    first = _message(org, integration, "k-0")
    chat = ChatRef.of(actors, first, RetryPolicy(budget=60.0))
    await chat.inbound(first)  # the chat exists and is resident
    owner = ray.get_actor(host_name(actors.owner("chat", chat.chat_id)), namespace=NAMESPACE)
    old_pid = await owner.pid.remote()
    messages = [_message(org, integration, f"k-{n}") for n in range(1, 30)]
    calls = [asyncio.ensure_future(chat.inbound(m)) for m in messages]
    os.kill(old_pid, signal.SIGKILL)
    accepted = await asyncio.gather(*calls)
    assert [a["chat_id"] for a in accepted] == [chat.chat_id] * len(messages)
    assert await owner.pid.remote() != old_pid
    async with db.tenant_tx(org.id) as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE chat_id = $1::uuid", chat.chat_id)
    assert stored == 30  # every acknowledged message once


async def test_org_and_agent_refs(actors: ActorSystem, db: Database, org: Org) -> None:
    async with db.tenant_tx(org.id) as conn:
        agent_id = await conn.fetchval(
            "INSERT INTO ai_agents (organization_id, name, type, prompt_template, guardrails)"
            " VALUES ($1, 'SDR', 'sdr', 'Be brief.', '{\"max_concurrent_runs\": 1}')"
            " RETURNING id", org.id)
    agent = AgentRef(actors, str(org.id), str(agent_id))
    assert await agent.start_run("r1") == 1
    assert await agent.start_run("r1") == 1  # the same run again: harmless
    with pytest.raises(RateLimited):
        await agent.start_run("r2")
    assert await agent.finish_run("r1") == 0
    assert (await agent.state())["running"] == []
    usage = OrgRef(actors, str(org.id))
    assert await usage.record_usage("ai_calls", 2) == 2
    assert await usage.flush() == 2
    assert (await usage.state())["usage"] == {"ai_calls": 2}
