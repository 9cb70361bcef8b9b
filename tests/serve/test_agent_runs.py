"""Agent runs against a model behind the real OpenAI SDK (the fake server of
tests/fakes/openai.py, the org's own key): tool calls run in the org's
transaction and are fed back; a provider error or a hang ends the run as
`error` within the timeout with nothing sent while the chat goes on; the
messages that arrive during a run get one more reply, not one each; fifty
chats triggering one agent at once all get their reply, within its
concurrent-run limit; an email auto-reply never triggers a run."""
from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from storage import followups
from storage.audit import Actor
from storage.db import Database
from tests.conftest import Account, register
from tests.fakes.callback import CallbackServer
from tests.fakes.llm_script import hang, status
from tests.fakes.openai import FakeOpenAI
from tests.peers.dovecot import Dovecot
from tests.peers.smtp import SmtpPeer
from tests.serve.agent_setup import (
    chat_with_agent,
    finished,
    make_agent,
    outbound,
    renaming_agent,
    runs,
    say,
    use_fake_openai,
)
from tests.serve.mailboxes import connect, inbound_count, mail, person
from tests.waiting import eventually


def completions(fake: FakeOpenAI, key: str) -> list[dict[str, Any]]:
    """The chat completion requests the fake got with `key` (the runs also
    embed the conversation to search memories: those are not completions)."""
    return [r for r in fake.requests(key) if "messages" in r]


async def drafts(db: Database, owner: Account, chat_id: str) -> list[dict[str, Any]]:
    return [m for m in await outbound(db, owner, chat_id) if m["ai_draft"]]


async def test_a_tool_call_runs_in_the_org_and_its_result_goes_back_to_the_model(
        api: httpx.AsyncClient, owner: Account, db: Database,
        fake_openai: FakeOpenAI) -> None:
    key = await use_fake_openai(api, owner, fake_openai)
    fake_openai.script(key, [("get_contact", {})], "Hi Grace, 40 seats are $4,000 a month.")
    agent = await make_agent(api, owner)
    _, chat_id = await chat_with_agent(api, owner, agent)
    (run,) = await finished(api, db, owner, agent["id"])
    assert run["status"] == "success" and run["provider"] == "openai", run
    assert [c["name"] for c in run["output_data"]["tool_calls"]] == ["get_contact"]
    assert run["output_data"]["tool_calls"][0]["status"] == "ok"
    assert run["tokens_used"] > 0
    (draft,) = await drafts(db, owner, chat_id)
    assert draft["content"] == "Hi Grace, 40 seats are $4,000 a month."
    first, second = completions(fake_openai, key)[-2:]
    tool_turn = second["messages"][-1]
    assert tool_turn["role"] == "tool" and "Grace" in tool_turn["content"]
    assert {t["function"]["name"] for t in first["tools"]} == set(agent["tools"])
    # The conversation reaches the model as delimited data, never as instructions.
    assert "<conversation>" in first["messages"][-1]["content"]


async def test_a_provider_error_or_a_hang_ends_the_run_and_sends_nothing(
        api: httpx.AsyncClient, owner: Account, db: Database, fake_openai: FakeOpenAI,
        callback: CallbackServer) -> None:
    key = await use_fake_openai(api, owner, fake_openai)
    fake_openai.script(key, status(500), status(500), hang(30), hang(30))
    agent = await make_agent(api, owner, guardrails={"mode": "autopilot"})
    inbox, chat_id = await chat_with_agent(api, owner, agent, callback=callback)
    (failed,) = await finished(api, db, owner, agent["id"])
    assert failed["status"] == "error" and "500" in failed["error_message"]
    started = time.monotonic()
    await say(api, inbox, db, owner, chat_id, "Still there?")
    hung = (await finished(api, db, owner, agent["id"], 2))[0]
    # ai_timeout 2 s, 1 retry (tests/conftest.py): given up on within the SDK's deadline
    assert hung["status"] == "error" and time.monotonic() - started < 15
    assert hung["execution_time_ms"] >= 2000
    assert await outbound(db, owner, chat_id) == []  # nothing sent, no draft
    # the chat keeps working: a person's reply goes out
    resp = await api.post(f"/v1/chats/{chat_id}/messages", headers=owner.headers,
                          json={"content": "A person answers."})
    assert resp.status_code == 202, resp.text


async def test_messages_during_a_run_get_one_more_reply_not_one_each(
        api: httpx.AsyncClient, owner: Account, db: Database,
        fake_openai: FakeOpenAI) -> None:
    key = await use_fake_openai(api, owner, fake_openai)
    fake_openai.script(key, hang(1.0), "The second reply.")
    agent = await make_agent(api, owner, tools=[])
    inbox, chat_id = await chat_with_agent(api, owner, agent)
    await eventually(lambda: completions(fake_openai, key), what="the first run under way")
    for text in ("one more thing", "and another", "last one"):
        await say(api, inbox, db, owner, chat_id, text)
    await finished(api, db, owner, agent["id"], 2)
    found = await eventually(lambda: _two(db, owner, chat_id), what="two drafts")
    assert len(found) == 2 and len(completions(fake_openai, key)) == 2
    # the second run read all three messages
    assert "last one" in completions(fake_openai, key)[1]["messages"][-1]["content"]


async def _two(db: Database, owner: Account, chat_id: str) -> list[dict[str, Any]] | None:
    found = await drafts(db, owner, chat_id)
    return found if len(found) >= 2 else None


async def test_fifty_chats_triggering_one_agent_at_once_all_get_their_reply(
        api: httpx.AsyncClient, owner: Account, db: Database,
        fake_openai: FakeOpenAI) -> None:
    await use_fake_openai(api, owner, fake_openai)
    agent = await make_agent(api, owner, tools=[], guardrails={"max_concurrent_runs": 4})
    chats = await asyncio.gather(*(chat_with_agent(api, owner, agent) for _ in range(50)))
    await finished(api, db, owner, agent["id"], 50)
    for _, chat_id in chats:
        assert len(await drafts(db, owner, chat_id)) == 1
    assert {r["status"] for r in await runs(api, owner, agent["id"])} == {"success"}


async def test_an_email_auto_reply_never_triggers_a_run(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer) -> None:
    _, box = await connect(api, owner, dovecot, smtp_peer)
    ann = person()
    first, first_id = mail(ann, box.address, "Hello", "Hello there")
    dovecot.append(box, first)

    async def stored(count: int) -> bool:
        return await inbound_count(db, owner) >= count
    await eventually(lambda: stored(1), what="the first message")
    async with db.tenant_tx(owner.org_id) as conn:
        chat_id = str(await conn.fetchval("SELECT id FROM chats"))
    agent = await make_agent(api, owner, tools=[])
    resp = await api.patch(f"/v1/chats/{chat_id}", headers=owner.headers,
                           json={"assigned_agent_id": agent["id"]})
    assert resp.status_code == 200
    dovecot.append(box, mail(ann, box.address, "Re: Hello", "I am out of office.",
                             in_reply_to=first_id, headers={"Auto-Submitted": "auto-replied"})[0])
    dovecot.append(box, mail(ann, box.address, "Re: Hello", "Back now: what's the price?",
                             in_reply_to=first_id)[0])
    await eventually(lambda: stored(3), what="both stored")
    (run,) = await finished(api, db, owner, agent["id"])
    assert "price" in run["input_data"]["last_message"]
    assert len(await runs(api, owner, agent["id"])) == 1


async def test_a_manual_run_and_a_due_follow_up_each_run_the_agent(
        api: httpx.AsyncClient, owner: Account, db: Database) -> None:
    agent = await make_agent(api, owner, tools=[])
    _, chat_id = await chat_with_agent(api, owner, agent)
    await finished(api, db, owner, agent["id"])
    resp = await api.post(f"/v1/agents/{agent['id']}/run", headers=owner.headers,
                          json={"chat_id": chat_id})
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] in ("started", "queued")
    await finished(api, db, owner, agent["id"], 2)
    async with db.tenant_tx(owner.org_id) as conn:  # as the schedule_followup tool does
        contact = await conn.fetchval("SELECT contact_id FROM chats WHERE id = $1::uuid",
                                      chat_id)
        await followups.schedule(conn, Actor(owner.org_id, agent_id=agent["id"]),
                                 agent_id=agent["id"], chat_id=chat_id,
                                 contact_id=str(contact),
                                 due_at=datetime.now(UTC) - timedelta(seconds=1),
                                 note="check in")
    done = await finished(api, db, owner, agent["id"], 3)
    assert sorted(r["trigger_event"] for r in done) == ["followup", "manual",
                                                        "message.received"]
    async with db.tenant_tx(owner.org_id) as conn:
        assert await conn.fetchval("SELECT status FROM agent_followups") == "done"
    # another org's agent cannot be run on our chat, nor ours on a chat it cannot see
    stranger = await register(api)
    resp = await api.post(f"/v1/agents/{agent['id']}/run", headers=stranger.headers,
                          json={"chat_id": chat_id})
    assert resp.status_code == 404, resp.text


async def test_a_quiet_conversation_leaves_the_contacts_facts_as_memories(
        api: httpx.AsyncClient, owner: Account, db: Database) -> None:
    agent = await make_agent(api, owner, tools=[])
    inbox, chat_id = await chat_with_agent(
        api, owner, agent, text="We use Salesforce today and our budget is $40k.")
    await say(api, inbox, db, owner, chat_id, "I prefer calls in the morning.")

    async def remembered() -> list[str]:
        async with db.tenant_tx(owner.org_id) as conn:
            rows = await conn.fetch("SELECT content, agent_id, contact_id FROM agent_memories")
        return [r["content"] for r in rows if str(r["agent_id"]) == agent["id"]]
    found = await eventually(remembered, what="memories of the quiet conversation")
    text = " | ".join(found).lower()
    assert "salesforce" in text and "40k" in text and "morning" in text, found


async def test_a_deal_a_person_moves_runs_the_follow_up_agent_on_the_contacts_chat(
        api: httpx.AsyncClient, owner: Account, db: Database) -> None:
    sdr = await make_agent(api, owner, tools=[])
    followup = await make_agent(api, owner, name="Follow-ups", type="followup", tools=[])
    _, chat_id = await chat_with_agent(api, owner, sdr)
    await finished(api, db, owner, sdr["id"])
    async with db.tenant_tx(owner.org_id) as conn:
        contact = str(await conn.fetchval("SELECT contact_id FROM chats WHERE id = $1::uuid",
                                          chat_id))
    resp = await api.post("/v1/pipelines", headers=owner.headers, json={
        "name": "Sales", "stages": [{"name": "Lead"}, {"name": "Proposal"}]})
    assert resp.status_code == 201, resp.text
    lead, proposal = (s["id"] for s in resp.json()["stages"])
    resp = await api.post("/v1/deals", headers=owner.headers, json={
        "name": "40 seats", "pipeline_id": resp.json()["id"], "contact_id": contact})
    assert resp.status_code == 201, resp.text
    moved = await api.patch(f"/v1/deals/{resp.json()['id']}", headers=owner.headers,
                            json={"stage_id": proposal})
    assert moved.status_code == 200, moved.text
    (run,) = await finished(api, db, owner, followup["id"])
    assert run["trigger_event"] == "deal.stage.changed"
    assert run["chat_id"] == chat_id
    assert len(await runs(api, owner, sdr["id"])) == 1  # the chat's own agent: not this one


async def test_a_held_tool_call_runs_only_once_a_person_approves_it(
        api: httpx.AsyncClient, owner: Account, db: Database,
        fake_openai: FakeOpenAI) -> None:
    bob, agent = await renaming_agent(api, owner, fake_openai)
    await chat_with_agent(api, owner, agent, text="Please rename my colleague Bob to Robert")
    (run,) = await finished(api, db, owner, agent["id"])
    (held,) = run["output_data"]["pending"]
    assert held["tool"] == "update_contact"
    assert (await api.get(f"/v1/contacts/{bob}", headers=owner.headers)).json()[
        "first_name"] == "Bob"  # not run yet
    listed = await api.get(f"/v1/agents/{agent['id']}/approvals", headers=owner.headers)
    assert [c["call_id"] for c in listed.json()["data"]] == [held["call_id"]]
    stranger = await register(api)
    path = f"/v1/agents/{agent['id']}/executions/{run['id']}/approvals/{held['call_id']}"
    assert (await api.post(path, headers=stranger.headers,
                           json={"approve": True})).status_code == 404
    resp = await api.post(path, headers=owner.headers, json={"approve": True})
    assert resp.status_code == 200, resp.text
    assert resp.json()["outcome"]["status"] == "ok"
    assert (await api.get(f"/v1/contacts/{bob}", headers=owner.headers)).json()[
        "first_name"] == "Robert"
    again = await api.post(path, headers=owner.headers, json={"approve": True})
    assert again.status_code == 409, again.text
    listed = await api.get(f"/v1/agents/{agent['id']}/approvals", headers=owner.headers)
    assert listed.json()["data"] == []
    async with db.tenant_tx(owner.org_id) as conn:
        who = await conn.fetchrow("SELECT user_id, agent_id FROM audit_logs"
                                  " WHERE action = 'contact.update' AND resource_id = $1::uuid",
                                  bob)
    assert str(who["agent_id"]) == agent["id"] and str(who["user_id"]) == owner.user_id


async def test_with_an_openai_key_memories_are_embedded_and_searched_by_openai(
        api: httpx.AsyncClient, owner: Account, db: Database,
        fake_openai: FakeOpenAI) -> None:
    key = await use_fake_openai(api, owner, fake_openai)
    agent = await make_agent(api, owner, tools=[])
    inbox, chat_id = await chat_with_agent(api, owner, agent,
                                           text="We use HubSpot and our budget is $25k.")

    async def remembered() -> list[dict[str, Any]]:
        async with db.tenant_tx(owner.org_id) as conn:
            rows = await conn.fetch("SELECT content, metadata FROM agent_memories")
        return [dict(r) for r in rows]
    found = await eventually(remembered, what="memories of the quiet conversation")
    assert {m["metadata"]["embedder"] for m in found} == {"openai"}

    def embedded() -> int:
        return len([r for r in fake_openai.requests(key) if "input" in r])
    before = embedded()
    assert before >= 1  # the memories (the first run had none to search)
    await say(api, inbox, db, owner, chat_id, "What was our budget again?")
    await finished(api, db, owner, agent["id"], 2)
    assert embedded() > before  # the next run searches them with the same embedder
    # an embedder that fails leaves memories out; the run still answers
    fake_openai.script(key, status(500), status(500), endpoint="embeddings")
    await say(api, inbox, db, owner, chat_id, "Still there?")
    (last, *_) = await finished(api, db, owner, agent["id"], 3)
    assert last["status"] == "success", last
