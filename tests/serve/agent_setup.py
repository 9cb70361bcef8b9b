"""Helpers for the AI agent tests: an agent made over the API, a chat of an
API inbox with it assigned, an org's own key pointed at the fake OpenAI
server (tests/fakes/openai.py), and reading back drafts and runs."""
from __future__ import annotations

import uuid
from typing import Any

import httpx

from storage.db import Database
from tests.conftest import Account
from tests.fakes.callback import CallbackServer
from tests.fakes.openai import FakeOpenAI
from tests.serve.messaging import Inbox, make_inbox, message, post_inbound
from tests.waiting import eventually


async def make_agent(api: httpx.AsyncClient, owner: Account, **fields: Any) -> dict[str, Any]:
    body = {"name": "Sales assistant", "type": "sdr", **fields}
    resp = await api.post("/v1/agents", headers=owner.headers, json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def use_fake_openai(api: httpx.AsyncClient, owner: Account, fake: FakeOpenAI) -> str:
    """The org's OpenAI key, served by the fake; returns the key to script."""
    key = fake.new_key()
    resp = await api.post("/v1/integrations", headers=owner.headers, json={
        "type": "openai", "name": "Our OpenAI key",
        "config": {"api_key": key, "base_url": fake.url + "/v1"}})
    assert resp.status_code == 201, resp.text
    assert key not in resp.text
    return key


async def chat_with_agent(api: httpx.AsyncClient, owner: Account, agent: dict[str, Any],
                          text: str = "How much for 40 seats?",
                          inbox: Inbox | None = None,
                          callback: CallbackServer | None = None) -> tuple[Inbox, str]:
    """A conversation of a new API inbox (one inbound message), its agent
    assigned, then `text` from the contact; returns the inbox and the chat id
    (`say` writes more to it)."""
    thread = f"t-{uuid.uuid4().hex[:8]}"
    inbox = inbox or await make_inbox(api, owner, callback.url(f"agent-{thread}")
                                      if callback else None)
    resp = await post_inbound(api, inbox, message(thread=thread, text="hello",
                                                  sender=f"s-{thread}"))
    assert resp.status_code == 202, resp.text
    chat_id = resp.json()["chat_id"]
    resp = await api.patch(f"/v1/chats/{chat_id}", headers=owner.headers,
                           json={"assigned_agent_id": agent["id"]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["assigned_agent_id"] == agent["id"]
    resp = await post_inbound(api, inbox, message(thread=thread, text=text,
                                                  sender=f"s-{thread}"))
    assert resp.status_code == 202, resp.text
    return inbox, chat_id


async def outbound(db: Database, owner: Account, chat_id: str) -> list[dict[str, Any]]:
    """The chat's messages of ours (agents' and people's), oldest first."""
    async with db.tenant_tx(owner.org_id) as conn:
        rows = await conn.fetch(
            "SELECT id, content, status, ai_draft, ai_agent_id, sender_type, metadata"
            " FROM messages WHERE chat_id = $1::uuid AND NOT is_incoming"
            " ORDER BY created_at, id", chat_id)
    return [dict(r) for r in rows]


async def runs(api: httpx.AsyncClient, owner: Account, agent_id: str) -> list[dict[str, Any]]:
    resp = await api.get(f"/v1/agents/{agent_id}/executions", headers=owner.headers,
                         params={"limit": 100})
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]  # type: ignore[no-any-return]


async def say(api: httpx.AsyncClient, inbox: Inbox, db: Database, owner: Account,
              chat_id: str, text: str) -> None:
    """The chat's contact writes `text` (to the chat `chat_with_agent` made)."""
    async with db.tenant_tx(owner.org_id) as conn:
        thread = str(await conn.fetchval(
            "SELECT channel_thread_id FROM chats WHERE id = $1::uuid", chat_id))
    resp = await post_inbound(api, inbox, message(thread=thread, text=text, sender=f"s-{thread}"))
    assert resp.status_code == 202, resp.text


async def finished(api: httpx.AsyncClient, db: Database, owner: Account, agent_id: str,
                   count: int = 1) -> list[dict[str, Any]]:
    """The agent's runs (newest first, as the API lists them) once `count`
    are recorded (waited for in Postgres: polling the API would hit its rate limit)."""
    async def enough() -> bool:
        async with db.tenant_tx(owner.org_id) as conn:
            return int(await conn.fetchval(
                "SELECT count(*) FROM agent_executions WHERE agent_id = $1::uuid",
                agent_id)) >= count
    await eventually(enough, timeout=30, what=f"{count} runs recorded")
    return await runs(api, owner, agent_id)


async def renaming_agent(api: httpx.AsyncClient, owner: Account,
                         fake_openai: FakeOpenAI) -> tuple[str, dict[str, Any]]:
    """A contact Bob, and an agent allowed `update_contact` whose model
    (scripted) asks to rename him to Robert: a call held for a person."""
    other = await api.post("/v1/contacts", headers=owner.headers,
                           json={"first_name": "Bob", "email": "bob@client.test"})
    assert other.status_code == 201, other.text
    bob = str(other.json()["id"])
    key = await use_fake_openai(api, owner, fake_openai)
    fake_openai.script(key, [("update_contact", {"contact_id": bob,
                                                 "fields": {"first_name": "Robert"}})],
                       "I asked a colleague to update Bob's record.")
    return bob, await make_agent(api, owner, tools=["update_contact"])
