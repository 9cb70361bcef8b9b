"""A web chat visitor's messages through Serve: sent once and shown to the team,
the team's reply live on the visitor WebSocket and sent, what a visitor token
can never reach (another chat, another org, team routes, unapproved drafts),
resume with since, bad frames, the per-visitor limit and bad bodies."""
from __future__ import annotations

import json
import uuid

import httpx
import pytest
import websockets

from actors.refs import ChatRef
from actors.runtime.client import ActorSystem
from serve.stack import Stack
from tests.conftest import Account, register
from tests.serve.agent_setup import make_agent
from tests.serve.messaging import Client
from tests.serve.webchat_visitors import (
    ORIGIN,
    OTHER,
    auth,
    make_webchat,
    messages_of,
    reply,
    say,
    subscribed,
    talking,
    transcript,
    visitor,
    visitor_ws,
    ws_url,
)


async def test_visitor_messages_reach_the_team_once(
        api: httpx.AsyncClient, owner: Account, stack: Stack) -> None:
    chat = await make_webchat(api, owner)
    me = await visitor(api, chat["id"], name="Ada Lovelace", email="ada@example.com")
    team = await Client.connect(stack.ws_url, owner.access)
    try:
        await team.subscribe(["org"])
        first = await say(api, me["token"], "Hello, do you ship to Norway?", "c-1")
        assert first.status_code == 202, first.text
        accepted = first.json()
        assert accepted["chat_id"] == me["chat_id"] and accepted["duplicate"] is False
        # 202 comes after COMMIT: the message is there for the next read.
        listed = await api.get(f"/v1/chats/{me['chat_id']}/messages", headers=owner.headers)
        assert [m["content"] for m in listed.json()["data"]] == ["Hello, do you ship to Norway?"]
        again = await say(api, me["token"], "Hello, do you ship to Norway?", "c-1")
        assert again.json() == {**accepted, "duplicate": True}
        received = await team.wait_for(lambda f: f.get("event_type") == "message.received")
        assert received["data"]["id"] == accepted["id"]
        assert received["chat_id"] == me["chat_id"]
    finally:
        await team.close()
    shown = (await api.get(f"/v1/chats/{me['chat_id']}", headers=owner.headers)).json()
    assert shown["channel"] == "webchat" and shown["contact_name"] == "Ada Lovelace"
    assert shown["integration_id"] == chat["id"]
    listed = await api.get(f"/v1/chats/{me['chat_id']}/messages", headers=owner.headers)
    assert len(listed.json()["data"]) == 1  # the same client_id stored once
    page = await transcript(api, me["token"])
    assert [m["content"] for m in page["data"]] == ["Hello, do you ship to Norway?"]
    assert set(page["data"][0]) == {"id", "content", "is_incoming", "sender_type", "status",
                                    "created_at", "attachments"}
    assert page["data"][0]["is_incoming"] is True

    # An anonymous visitor is "Visitor" and the start of their id in the inbox.
    anonymous = await visitor(api, chat["id"])
    assert (await say(api, anonymous["token"], "hi")).status_code == 202
    listed = await api.get(f"/v1/chats/{anonymous['chat_id']}", headers=owner.headers)
    nonce = anonymous["visitor_id"].split(".")[1]
    assert listed.json()["contact_name"] == f"Visitor {nonce[:6]}"


async def test_team_reply_reaches_the_visitor_live_and_sent(
        api: httpx.AsyncClient, owner: Account, stack: Stack) -> None:
    me, client = await talking(api, owner, stack, "Anyone there?")
    team = await Client.connect(stack.ws_url, owner.access)
    try:
        await subscribed(client)
        await team.subscribe([f"chat:{me['chat_id']}"])
        sent = await reply(api, owner, me["chat_id"], "Yes! How can we help?")
        frame = await client.wait_for(lambda f: f["type"] == "message")
        assert frame["message"]["id"] == sent["id"] and frame["seq"] > 0
        assert frame["message"]["content"] == "Yes! How can we help?"
        assert frame["message"]["is_incoming"] is False
        assert frame["message"]["sender_type"] == "user"
        assert set(frame["message"]) == {"id", "content", "is_incoming", "sender_type",
                                         "status", "created_at"}
        status = await client.wait_for(lambda f: f["type"] == "status")
        assert status["message_id"] == sent["id"] and status["status"] == "sent"

        # Typing both ways.
        await client.send({"type": "typing"})
        typed = await team.wait_for(lambda f: f.get("type") == "typing")
        assert typed["chat_id"] == me["chat_id"] and typed["user_id"] is None
        await team.send({"type": "typing", "chat_id": me["chat_id"]})
        assert await client.wait_for(lambda f: f["type"] == "typing") == {"type": "typing"}
        await client.send({"type": "ping"})
        await client.wait_for(lambda f: f["type"] == "pong")
    finally:
        await client.close()
        await team.close()
    listed = await api.get(f"/v1/chats/{me['chat_id']}/messages", headers=owner.headers)
    assert listed.json()["data"][0]["status"] == "sent"
    page = await transcript(api, me["token"])
    assert [(m["content"], m["status"]) for m in page["data"]] == [
        ("Yes! How can we help?", "sent"), ("Anyone there?", "delivered")]


async def test_visitor_token_reaches_its_own_chat_only(
        api: httpx.AsyncClient, owner: Account, stack: Stack, actors: ActorSystem) -> None:
    chat = await make_webchat(api, owner)
    me = await visitor(api, chat["id"])
    other = await visitor(api, chat["id"])
    assert (await say(api, me["token"], "mine", client_id="mine-1")).status_code == 202
    assert (await say(api, other["token"], "theirs")).status_code == 202
    rival = await register(api, "Rival")
    rival_chat = await make_webchat(api, rival)
    outsider = await visitor(api, rival_chat["id"])
    assert (await say(api, outsider["token"], "other org")).status_code == 202
    assert [m["content"] for m in (await transcript(api, me["token"]))["data"]] == ["mine"]
    assert [m["content"] for m in (await transcript(api, outsider["token"]))["data"]] == [
        "other org"]

    # An agent's draft in the chat: never shown until approved.
    agent = await make_agent(api, owner)
    ref = ChatRef(actors, owner.org_id, me["chat_id"])
    draft = await ref.draft("Secret discount: 50%", agent["id"], str(uuid.uuid4()), "draft mode")
    client = await visitor_ws(stack, me["token"])
    try:
        await subscribed(client, since=0)
        frames = await client.wait_count(lambda f: f["type"] == "message", 1)
        assert [f["message"]["content"] for f in frames] == ["mine"]
        # The visitor's own message names the client_id it was sent with (the
        # widget swaps its pending copy for it, whichever comes first).
        assert frames[0]["message"]["client_id"] == "mine-1"
        rejected = await ref.draft("Another secret", agent["id"], str(uuid.uuid4()), "x")
        await ref.decide_draft(rejected["id"], approve=False, content=None,
                               user_id=owner.user_id)
        await ref.decide_draft(draft["id"], approve=True, content="Our best price is 10% off",
                               user_id=owner.user_id)
        shown = await client.wait_for(lambda f: f["type"] == "message"
                                      and f["message"]["id"] == draft["id"])
        assert shown["message"]["content"] == "Our best price is 10% off"
        await client.wait_for(lambda f: f["type"] == "status" and f["status"] == "sent")
        assert all("secret" not in json.dumps(f).lower() for f in client.frames)
    finally:
        await client.close()
    contents = [m["content"] for m in (await transcript(api, me["token"]))["data"]]
    assert contents == ["Our best price is 10% off", "mine"]

    # A visitor token opens no team route, a team token no visitor route.
    assert (await api.get("/v1/chats", headers=auth(me["token"]))).status_code == 401
    assert (await api.get(f"/v1/chats/{me['chat_id']}/messages",
                          headers=auth(me["token"]))).status_code == 401
    team = await Client.connect(stack.ws_url, me["token"])
    assert (await team.wait_closed())[0] == 4401
    assert (await api.get("/v1/webchat/messages", headers=auth(owner.access))).status_code == 401
    assert (await api.get("/v1/webchat/messages",
                          headers={"Origin": ORIGIN})).status_code == 401
    bad = await websockets.connect(f"{ws_url(stack)}?token={owner.access}", origin=ORIGIN)
    closed = Client(bad)
    assert (await closed.wait_closed())[0] == 4401
    # The right token from a site the integration does not name.
    assert (await api.get("/v1/webchat/messages",
                          headers=auth(me["token"], OTHER))).status_code == 403
    foreign = await visitor_ws(stack, me["token"], origin=OTHER)
    assert (await foreign.wait_closed())[0] == 4403


async def test_resume_with_since_misses_nothing_and_repeats_nothing(
        api: httpx.AsyncClient, owner: Account, stack: Stack) -> None:
    me, client = await talking(api, owner, stack, "one")
    await subscribed(client)
    await reply(api, owner, me["chat_id"], "two")
    await client.wait_for(lambda f: f["type"] == "status" and f["status"] == "sent")
    last = max(f["seq"] for f in client.frames if "seq" in f)
    await client.close()
    # Missed while away: a reply, its status, and a visitor message from another tab.
    missed = await reply(api, owner, me["chat_id"], "three")
    assert (await say(api, me["token"], "four")).status_code == 202
    resumed = await visitor_ws(stack, me["token"])
    try:
        await subscribed(resumed, since=last)
        await reply(api, owner, me["chat_id"], "five")  # live, after the replay
        await resumed.wait_for(lambda f: f["type"] == "message"
                               and f["message"]["content"] == "five")
        await resumed.wait_count(lambda f: f["type"] == "status", 2)
    finally:
        await resumed.close()
    contents = [f["message"]["content"] for f in messages_of(resumed)]
    assert contents == ["three", "four", "five"]
    seqs = [f["seq"] for f in resumed.frames if "seq" in f]
    assert seqs == sorted(set(seqs)) and min(seqs) > last
    statuses = [f for f in resumed.frames if f["type"] == "status"]
    assert statuses[0]["message_id"] == missed["id"]


async def test_bad_frames_get_error_frames(api: httpx.AsyncClient, owner: Account,
                                           stack: Stack) -> None:
    chat = await make_webchat(api, owner)
    me = await visitor(api, chat["id"])
    client = await visitor_ws(stack, me["token"])
    try:
        await client.ws.send("not json")
        await client.send({"type": "subscribe", "since": -1})
        await client.send({"type": "subscribe", "since": 10**12})
        await client.send({"type": "explode"})
        errors = await client.wait_count(lambda f: f["type"] == "error", 4)
        assert [e["error"]["code"] for e in errors] == ["invalid"] * 4
        await subscribed(client)
    finally:
        await client.close()
    broken = await websockets.connect(f"{ws_url(stack)}?token=garbage", origin=ORIGIN)
    assert (await Client(broken).wait_closed())[0] == 4401


async def test_visitor_messages_are_rate_limited(api: httpx.AsyncClient,
                                                 owner: Account) -> None:
    chat = await make_webchat(api, owner)
    me = await visitor(api, chat["id"])
    codes = [(await say(api, me["token"], f"m{i}")).status_code for i in range(20)]
    assert codes == [202] * 20  # the burst
    # Refilled at 30 a minute: a few more may pass while these run, not many.
    answers = [await say(api, me["token"], f"more {i}") for i in range(5)]
    limited = next(a for a in answers if a.status_code != 202)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"
    other = await visitor(api, chat["id"])  # another visitor has a bucket of its own
    assert (await say(api, other["token"], "hi")).status_code == 202


@pytest.mark.parametrize("body,status", [
    (b"{", 400),
    (b'{"content": "hi"}', 422),
    (b'{"content": "", "client_id": "a"}', 422),
    (b'{"content": "   ", "client_id": "a"}', 422),
    (json.dumps({"content": "x" * 4097, "client_id": "a"}).encode(), 422),
    (json.dumps({"content": "hi", "client_id": "a" * 256}).encode(), 422),
    (json.dumps({"content": "hi", "client_id": "a", "extra": 1}).encode(), 422),
    (json.dumps({"content": "a\u0000b", "client_id": "a"}).encode(), 422),
    (b"[1, 2]", 422),
    (b'{"content": "' + b"x" * (2 * 1024 * 1024) + b'", "client_id": "a"}', 413),
])
async def test_bad_message_bodies_are_4xx(api: httpx.AsyncClient, owner: Account,
                                          body: bytes, status: int) -> None:
    chat = await make_webchat(api, owner)
    me = await visitor(api, chat["id"])
    resp = await api.post("/v1/webchat/messages", content=body,
                          headers={**auth(me["token"]), "Content-Type": "application/json"})
    assert resp.status_code == status, resp.text
    assert set(resp.json()["error"]) == {"code", "message", "details"}
