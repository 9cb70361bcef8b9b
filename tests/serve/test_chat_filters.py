"""The chat list's filters (search, agent, person, `me`) and assigning a chat
to a member: the checks, the audit row and `chat.assigned` to the assignee."""
from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import redis.asyncio as aioredis

from core.settings import Settings
from storage.db import Database
from tests.conftest import Account, register
from tests.serve.agent_setup import make_agent
from tests.serve.messaging import Inbox, make_inbox, message, post_inbound
from tests.serve.test_auth import envelope
from tests.serve.test_members import join
from tests.waiting import eventually


async def open_chat(api: httpx.AsyncClient, inbox: Inbox, name: str, **sender: Any) -> str:
    thread = f"t-{uuid.uuid4().hex[:8]}"
    resp = await post_inbound(api, inbox, message(thread=thread, sender=f"s-{thread}",
                                                  name=name, **sender))
    assert resp.status_code == 202, resp.text
    return str(resp.json()["chat_id"])


async def listed(api: httpx.AsyncClient, account: Account | dict[str, str],
                 **params: str) -> list[str]:
    headers = account.headers if isinstance(account, Account) else account
    resp = await api.get("/v1/chats", params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["total"] == len(body["data"])
    return sorted(chat["id"] for chat in body["data"])


async def test_search_finds_chats_by_contact_name_email_username_and_title(
        api: httpx.AsyncClient, owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    ada = await open_chat(api, inbox, "Ada Lovelace", email="ada@analytical.example")
    alan = await open_chat(api, inbox, "Alan Turing", email="alan@bletchley.example")
    ada_contact = (await api.get(f"/v1/chats/{ada}", headers=owner.headers)).json()["contact_id"]
    resp = await api.patch(f"/v1/contacts/{ada_contact}", headers=owner.headers,
                           json={"telegram_username": "countess"})
    assert resp.status_code == 200, resp.text
    assert await listed(api, owner, q="lovelace") == [ada]
    assert await listed(api, owner, q="ADA love") == [ada]  # every word, any case
    assert await listed(api, owner, q="bletchley") == [alan]
    assert await listed(api, owner, q="countess") == [ada]
    assert await listed(api, owner, q="tur") == [alan]  # the start of a word
    assert await listed(api, owner, q="uring") == []
    assert await listed(api, owner, q="ada turing") == []
    # The title is searched too: a contact renamed keeps the chat's title.
    contact = (await api.get(f"/v1/chats/{alan}", headers=owner.headers)).json()["contact_id"]
    resp = await api.patch(f"/v1/contacts/{contact}", headers=owner.headers,
                           json={"first_name": "Prof", "last_name": "T"})
    assert resp.status_code == 200, resp.text
    assert await listed(api, owner, q="alan") == [alan]
    assert await listed(api, owner, q="Alan  Tur") == [alan]  # the title's start, whole
    assert await listed(api, owner, q="turing") == []  # a title matches from its start
    assert await listed(api, owner, q="prof") == [alan]
    envelope(await api.get("/v1/chats", params={"q": "a b c d e f"}, headers=owner.headers),
             422)


async def test_the_agent_and_person_filters_and_me(api: httpx.AsyncClient,
                                                   owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    first, second, third = [await open_chat(api, inbox, f"Person {n}") for n in range(3)]
    agent = await make_agent(api, owner)
    colleague = await join(api, owner, "admin")
    for chat, body in ((first, {"assigned_agent_id": agent["id"]}),
                       (second, {"assigned_user_id": owner.user_id}),
                       (third, {"assigned_user_id": colleague.user_id,
                                "assigned_agent_id": agent["id"]})):
        resp = await api.patch(f"/v1/chats/{chat}", headers=owner.headers, json=body)
        assert resp.status_code == 200, resp.text
        out = resp.json()
        assert all(out[k] == v for k, v in body.items()), out
    # A field left out stays as it was.
    resp = await api.patch(f"/v1/chats/{first}", headers=owner.headers,
                           json={"assigned_user_id": None})
    assert resp.json()["assigned_agent_id"] == agent["id"]
    assert resp.json()["assigned_user_id"] is None
    assert await listed(api, owner, assigned_agent_id=agent["id"]) == sorted([first, third])
    assert await listed(api, owner, assigned_user_id=owner.user_id) == [second]
    assert await listed(api, owner, assigned_user_id="me") == [second]
    assert await listed(api, colleague, assigned_user_id="me") == [third]
    assert await listed(api, owner, assigned_user_id="me",
                        assigned_agent_id=agent["id"]) == []
    envelope(await api.get("/v1/chats", params={"assigned_user_id": "nobody"},
                           headers=owner.headers), 422)
    # Unassigning the agent drops the chat from its filter.
    resp = await api.patch(f"/v1/chats/{third}", headers=owner.headers,
                           json={"assigned_agent_id": None})
    assert resp.status_code == 200 and resp.json()["assigned_user_id"] == colleague.user_id
    assert await listed(api, owner, assigned_agent_id=agent["id"]) == [first]
    # A member who leaves leaves their chats to nobody (the audit row says how many).
    removed = await api.delete(f"/v1/members/{colleague.user_id}", headers=owner.headers)
    assert removed.status_code == 204, removed.text
    assert (await api.get(f"/v1/chats/{third}", headers=owner.headers)).json()[
        "assigned_user_id"] is None
    assert await listed(api, owner, assigned_user_id=owner.user_id) == [second]  # kept
    audit = (await api.get("/v1/audit-logs", params={"action": "member.remove"},
                           headers=owner.headers)).json()["data"]
    assert audit[0]["changes"]["chats_unassigned"] == 1


async def test_an_api_key_has_no_me(api: httpx.AsyncClient, owner: Account) -> None:
    made = await api.post("/v1/api-keys", json={"name": "inbox", "scopes": ["chats:read"]},
                          headers=owner.headers)
    assert made.status_code == 201, made.text
    as_key = {"X-API-Key": made.json()["key"]}
    error = envelope(await api.get("/v1/chats", params={"assigned_user_id": "me"},
                                   headers=as_key), 422, "invalid")
    assert error["details"] == {"field": "assigned_user_id"}
    assert await listed(api, as_key, assigned_user_id=owner.user_id) == []


async def test_the_checks_of_an_assignment(api: httpx.AsyncClient, owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    chat = await open_chat(api, inbox, "Grace Hopper")
    stranger = await register(api, "Elsewhere")
    other_inbox = await make_inbox(api, stranger)
    theirs = await open_chat(api, other_inbox, "Someone")
    path = f"/v1/chats/{chat}"
    error = envelope(await api.patch(path, headers=owner.headers,
                                     json={"assigned_user_id": stranger.user_id}), 422)
    assert error["details"] == {"field": "assigned_user_id"}
    error = envelope(await api.patch(path, headers=owner.headers,
                                     json={"assigned_user_id": str(uuid.uuid4())}), 422)
    assert error["details"] == {"field": "assigned_user_id"}
    their_agent = await make_agent(api, stranger)
    error = envelope(await api.patch(path, headers=owner.headers, json={
        "assigned_user_id": owner.user_id, "assigned_agent_id": their_agent["id"]}), 422)
    assert error["details"] == {"field": "assigned_agent_id"}
    envelope(await api.patch(path, headers=owner.headers, json={}), 422)
    envelope(await api.patch(path, headers=owner.headers, json={"title": "x"}), 422)
    envelope(await api.patch(f"/v1/chats/{theirs}", headers=owner.headers,
                             json={"assigned_user_id": owner.user_id}), 404)
    # Nothing changed by the refused ones (the agent check came first).
    out = (await api.get(path, headers=owner.headers)).json()
    assert out["assigned_user_id"] is None and out["assigned_agent_id"] is None
    assert (await api.get(f"/v1/chats/{theirs}", headers=stranger.headers)).json()[
        "assigned_user_id"] is None


async def test_assignment_is_audited_and_notifies_the_assignee(
        api: httpx.AsyncClient, owner: Account, settings: Settings, db: Database) -> None:
    inbox = await make_inbox(api, owner)
    chat = await open_chat(api, inbox, "Grace Hopper")
    colleague = await join(api, owner, "admin")
    redis = aioredis.Redis.from_url(settings.redis_url)
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(f"user:{colleague.user_id}:notifications")
        await pubsub.get_message(timeout=5)  # the subscription's confirmation
        resp = await api.patch(f"/v1/chats/{chat}", headers=owner.headers,
                               json={"assigned_user_id": colleague.user_id})
        assert resp.status_code == 200, resp.text
        got: list[dict[str, Any]] = []

        async def notified() -> bool:
            item = await pubsub.get_message(timeout=1)
            if item and item["type"] == "message":
                got.append(json.loads(item["data"]))
            return any(e["event_type"] == "chat.assigned" for e in got)

        await eventually(notified, what="chat.assigned on the assignee's notifications")
    finally:
        await pubsub.aclose()
        await redis.aclose()
    event = next(e for e in got if e["event_type"] == "chat.assigned")
    assert event["data"]["chat_id"] == chat
    assert event["data"]["assigned_user_id"] == colleague.user_id
    assert event["data"]["notify_user_ids"] == [colleague.user_id]
    # Also on the org's event log, and the chat's audit row names both sides.
    events = (await api.get("/v1/events?since=0&limit=1000", headers=owner.headers)).json()
    assert [e["data"]["assigned_by"] for e in events["data"]
            if e["event_type"] == "chat.assigned"] == [owner.user_id]
    async with db.tenant_tx(owner.org_id) as conn:
        row = await conn.fetchrow(
            "SELECT user_id, changes FROM audit_logs WHERE action = 'chat.assign'"
            " AND resource_id = $1", uuid.UUID(chat))
    assert str(row["user_id"]) == owner.user_id
    assert row["changes"] == {"assigned_user_id": [None, colleague.user_id]}
