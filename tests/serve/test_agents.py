"""AI agents through the running engine: CRUD with checked templates,
tools and guardrails; a message to a chat with an agent makes a draft (the
offline provider, no key configured) that a person approves, edits or
rejects over the API and the WebSocket; autopilot sends by itself; an
auto-reply never triggers a run; another org's agents and drafts are out
of reach; every run is an execution row and an `ai.agent.triggered` event."""
from __future__ import annotations

from typing import Any

import httpx

from serve.stack import Stack
from storage.db import Database
from tests.conftest import Account, register
from tests.fakes.callback import CallbackServer
from tests.serve.agent_setup import chat_with_agent, make_agent, outbound, runs, say
from tests.serve.messaging import Client, make_inbox, message, post_inbound
from tests.waiting import eventually


async def a_draft(db: Database, owner: Account, chat_id: str) -> dict[str, Any] | None:
    found = [m for m in await outbound(db, owner, chat_id) if m["status"] == "draft"]
    return found[0] if found else None


async def test_agents_are_made_with_their_types_defaults_and_checked(
        api: httpx.AsyncClient, owner: Account) -> None:
    agent = await make_agent(api, owner, type="sdr")
    assert agent["prompt_template"] and agent["tools"] and agent["is_active"]
    for bad, field in (({"prompt_template": "Hi {contact} {secret_sauce}"}, "prompt_template"),
                       ({"tools": ["get_contact", "drop_tables"]}, "tools"),
                       ({"guardrails": {"mode": "yolo"}}, "guardrails.mode"),
                       ({"type": "wizard"}, None)):
        resp = await api.post("/v1/agents", headers=owner.headers,
                              json={"name": "x", "type": "sdr", **bad})
        assert resp.status_code == 422, resp.text
        if field:
            assert resp.json()["error"]["details"]["field"] == field
    resp = await api.patch(f"/v1/agents/{agent['id']}", headers=owner.headers,
                           json={"guardrails": {"mode": "autopilot"}, "name": "Renamed"})
    assert resp.status_code == 200 and resp.json()["guardrails"] == {"mode": "autopilot"}
    stranger = await register(api)
    for method in ("get", "patch", "delete"):
        kwargs: dict[str, Any] = {"json": {"name": "mine"}} if method == "patch" else {}
        resp = await getattr(api, method)(f"/v1/agents/{agent['id']}",
                                          headers=stranger.headers, **kwargs)
        assert resp.status_code == 404, (method, resp.text)
    listed = await api.get("/v1/agents", headers=stranger.headers)
    assert listed.json()["total"] == 0


async def test_a_message_makes_a_draft_a_person_approves_edits_or_rejects(
        api: httpx.AsyncClient, owner: Account, db: Database, stack: Stack,
        callback: CallbackServer) -> None:
    agent = await make_agent(api, owner)
    ws = await Client.connect(stack.ws_url, owner.access)
    try:
        await ws.subscribe(["org"])
        inbox, chat_id = await chat_with_agent(api, owner, agent, callback=callback)
        draft = await eventually(lambda: a_draft(db, owner, chat_id), what="a draft")
        assert draft["ai_draft"] and str(draft["ai_agent_id"]) == agent["id"]
        frame = await ws.wait_for(lambda f: f.get("event_type") == "message.created"
                                  and f["data"].get("ai_draft"))
        assert frame["data"]["id"] == str(draft["id"])
        (run,) = await runs(api, owner, agent["id"])
        assert run["status"] == "success" and run["provider"] == "offline"
        assert run["output_data"]["draft"] == str(draft["id"])
        # Edited, then approved over the API: it is sent as edited.
        resp = await api.post(f"/v1/messages/{draft['id']}/approve", headers=owner.headers,
                              json={"content": "Edited: 40 seats are $4,000."})
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "pending"
        again = await api.post(f"/v1/messages/{draft['id']}/approve", headers=owner.headers)
        assert again.status_code == 409, again.text

        async def sent() -> bool:
            rows = {str(m["id"]): m for m in await outbound(db, owner, chat_id)}
            return rows[str(draft["id"])]["status"] == "sent"
        await eventually(sent, what="the approved draft sent")
        row = {str(m["id"]): m for m in await outbound(db, owner, chat_id)}[str(draft["id"])]
        assert row["content"] == "Edited: 40 seats are $4,000."
        assert row["metadata"]["draft"]["outcome"] == "edited"
        assert row["metadata"]["draft"]["original"] != row["content"]

        # The next message makes another draft, rejected over the WebSocket.
        await say(api, inbox, db, owner, chat_id, "And 50 seats?")
        second = await eventually(lambda: a_draft(db, owner, chat_id), what="a second draft")
        await ws.send({"type": "draft.reject", "message_id": str(second["id"]), "ref": "r1"})
        ack = await ws.wait_for(lambda f: f.get("ref") == "r1")
        assert ack["type"] == "draft.ack" and ack["message"]["status"] == "rejected"
        rows = {str(m["id"]): m for m in await outbound(db, owner, chat_id)}
        assert rows[str(second["id"])]["metadata"]["draft"]["outcome"] == "rejected"
        # and a third, approved as written over the WebSocket
        await say(api, inbox, db, owner, chat_id, "OK, book it.")
        third = await eventually(lambda: a_draft(db, owner, chat_id), what="a third draft")
        await ws.send({"type": "draft.approve", "message_id": str(third["id"]), "ref": "a1"})
        ack = await ws.wait_for(lambda f: f.get("ref") == "a1")
        assert ack["type"] == "draft.ack" and ack["message"]["status"] == "pending"

        async def third_sent() -> bool:
            rows = {str(m["id"]): m for m in await outbound(db, owner, chat_id)}
            return rows[str(third["id"])]["status"] == "sent"
        await eventually(third_sent, what="the third draft sent")
        rows = {str(m["id"]): m for m in await outbound(db, owner, chat_id)}
        assert rows[str(third["id"])]["metadata"]["draft"]["outcome"] == "approved"
    finally:
        await ws.close()


async def test_autopilot_sends_by_itself(
        api: httpx.AsyncClient, owner: Account, db: Database, callback: CallbackServer) -> None:
    agent = await make_agent(api, owner, guardrails={"mode": "autopilot"})
    _, chat_id = await chat_with_agent(api, owner, agent, callback=callback)

    async def sent_by_agent() -> list[dict[str, Any]]:
        return [m for m in await outbound(db, owner, chat_id)
                if m["sender_type"] == "agent" and m["status"] == "sent"]
    (reply,) = await eventually(sent_by_agent, what="the agent's reply sent")
    assert not reply["ai_draft"]
    assert len(await runs(api, owner, agent["id"])) == 1


async def test_another_orgs_drafts_and_chats_are_out_of_reach(
        api: httpx.AsyncClient, owner: Account, db: Database) -> None:
    agent = await make_agent(api, owner)
    _, chat_id = await chat_with_agent(api, owner, agent)
    draft = await eventually(lambda: a_draft(db, owner, chat_id), what="a draft")
    stranger = await register(api)
    resp = await api.post(f"/v1/messages/{draft['id']}/approve", headers=stranger.headers)
    assert resp.status_code == 404, resp.text
    # nor may another org's agent be assigned to our chat, or ours to theirs
    theirs = await make_agent(api, stranger)
    resp = await api.patch(f"/v1/chats/{chat_id}", headers=owner.headers,
                           json={"assigned_agent_id": theirs["id"]})
    assert resp.status_code == 422, resp.text
    inbox = await make_inbox(api, stranger)
    resp = await post_inbound(api, inbox, message(thread="x", text="hi"))
    resp = await api.patch(f"/v1/chats/{resp.json()['chat_id']}", headers=owner.headers,
                           json={"assigned_agent_id": agent["id"]})
    assert resp.status_code == 404, resp.text
    assert (await a_draft(db, owner, chat_id))["status"] == "draft"


async def test_an_integrations_default_agent_answers_its_new_chats(
        api: httpx.AsyncClient, owner: Account, db: Database) -> None:
    agent = await make_agent(api, owner)
    inbox = await make_inbox(api, owner)
    resp = await api.patch(f"/v1/integrations/{inbox.id}", headers=owner.headers,
                           json={"default_agent_id": agent["id"]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["config"]["default_agent_id"] == agent["id"]
    resp = await post_inbound(api, inbox, message(thread="fresh", text="Hi, pricing?"))
    assert resp.status_code == 202, resp.text
    chat_id = resp.json()["chat_id"]
    await eventually(lambda: a_draft(db, owner, chat_id), what="a draft by the default agent")
    chat = await api.get(f"/v1/chats/{chat_id}", headers=owner.headers)
    assert chat.json()["assigned_agent_id"] == agent["id"]
    stranger = await register(api)
    theirs = await make_agent(api, stranger)
    resp = await api.patch(f"/v1/integrations/{inbox.id}", headers=owner.headers,
                           json={"default_agent_id": theirs["id"]})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["details"]["field"] == "default_agent_id"
