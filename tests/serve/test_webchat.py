"""The web chat channel end to end through Serve: integrations, visitor
sessions (origins, visitor ids, identity HMAC), the visitor's transcript and
messages, the visitor WebSocket (replies, statuses, typing, resume), what a
visitor token can never reach, CORS, limits and bad input."""
from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import httpx
import pytest
import websockets

from actors.refs import ChatRef
from actors.runtime.client import ActorSystem
from serve.stack import Stack
from tests.conftest import Account, register
from tests.serve.agent_setup import make_agent
from tests.serve.local_app import fresh_ip, local_app
from tests.serve.messaging import Client
from tests.waiting import eventually

ORIGIN = "https://shop.example"
OTHER = "https://evil.example"


async def make_webchat(api: httpx.AsyncClient, account: Account,
                       origins: list[str] | None = None,
                       verify: bool = False) -> dict[str, Any]:
    resp = await api.post("/v1/integrations", headers=account.headers, json={
        "type": "webchat", "name": "Website",
        "config": {"allowed_origins": origins or [ORIGIN], "identity_verification": verify}})
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def session(api: httpx.AsyncClient, integration_id: str, origin: str | None = ORIGIN,
                  **body: Any) -> httpx.Response:
    headers = {"Origin": origin} if origin else {}
    return await api.post(f"/v1/webchat/{integration_id}/sessions", json=body, headers=headers)


async def visitor(api: httpx.AsyncClient, integration_id: str, **body: Any) -> dict[str, Any]:
    resp = await session(api, integration_id, **body)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def auth(token: str, origin: str = ORIGIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Origin": origin}


async def say(api: httpx.AsyncClient, token: str, content: str,
              client_id: str | None = None) -> httpx.Response:
    return await api.post("/v1/webchat/messages", headers=auth(token), json={
        "content": content, "client_id": client_id or uuid.uuid4().hex})


async def transcript(api: httpx.AsyncClient, token: str, **params: Any) -> dict[str, Any]:
    resp = await api.get("/v1/webchat/messages", headers=auth(token), params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def ws_url(stack: Stack) -> str:
    return stack.ws_url.replace("/v1/ws", "/v1/webchat/ws")


async def visitor_ws(stack: Stack, token: str, origin: str = ORIGIN) -> Client:
    ws = await websockets.connect(f"{ws_url(stack)}?token={token}", origin=origin,
                                  max_queue=None, open_timeout=20)
    return Client(ws)


async def subscribed(client: Client, since: int | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "subscribe"}
    if since is not None:
        frame["since"] = since
    await client.send(frame)
    return await client.wait_for(lambda f: f["type"] == "subscribed")


async def reply(api: httpx.AsyncClient, owner: Account, chat_id: str,
                content: str) -> dict[str, Any]:
    resp = await api.post(f"/v1/chats/{chat_id}/messages", headers=owner.headers,
                          json={"content": content})
    assert resp.status_code == 202, resp.text
    return resp.json()  # type: ignore[no-any-return]


def messages_of(client: Client) -> list[dict[str, Any]]:
    return [f for f in client.frames if f["type"] == "message"]


# -- integrations ------------------------------------------------------------------

async def test_webchat_integration_is_validated_and_its_secret_shown_once(
        api: httpx.AsyncClient, owner: Account) -> None:
    for origins in ([], ["https://shop.example/path"], ["ftp://shop.example"], ["shop.example"],
                    ["https://*.example"], ["https://user@shop.example"],
                    [f"https://s{i}.example" for i in range(21)]):
        resp = await api.post("/v1/integrations", headers=owner.headers, json={
            "type": "webchat", "name": "Website", "config": {"allowed_origins": origins}})
        assert resp.status_code == 422, (origins, resp.text)
        assert resp.json()["error"]["code"] in ("invalid", "validation_error")
    plain = await make_webchat(api, owner, ["HTTPS://Shop.Example:443", "http://localhost:8080"])
    assert plain["config"] == {"allowed_origins": ["https://shop.example",
                                                   "http://localhost:8080"],
                               "identity_verification": False}
    assert plain.get("secret") is None
    assert f'data-integration="{plain["id"]}"' in plain["embed"]
    assert plain["embed"].startswith("<script src=") and "/widget.js" in plain["embed"]

    verified = await make_webchat(api, owner, verify=True)
    secret = verified["secret"]
    assert len(secret) == 64
    shown = await api.get(f"/v1/integrations/{verified['id']}", headers=owner.headers)
    assert shown.status_code == 200
    assert secret not in shown.text and "secret" not in shown.json()["config"]
    assert shown.json()["config"]["identity_verification"] is True
    assert shown.json()["embed"] == verified["embed"]
    listed = await api.get("/v1/integrations", headers=owner.headers)
    assert {i["id"]: i["embed"] for i in listed.json()["data"]} == {
        plain["id"]: plain["embed"], verified["id"]: verified["embed"]}
    assert secret not in listed.text

    patched = await api.patch(f"/v1/integrations/{verified['id']}", headers=owner.headers,
                              json={"config": {"allowed_origins": ["https://New.example"]}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["config"]["allowed_origins"] == ["https://new.example"]
    bad = await api.patch(f"/v1/integrations/{verified['id']}", headers=owner.headers,
                          json={"config": {"allowed_origins": ["nope"]}})
    assert bad.status_code == 422
    rotated = await api.post(f"/v1/integrations/{verified['id']}/rotate-secret",
                             headers=owner.headers)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] not in (secret, None)

    inbox = await api.post("/v1/integrations", headers=owner.headers,
                           json={"type": "api", "name": "Inbox"})
    wrong = await api.patch(f"/v1/integrations/{inbox.json()['id']}", headers=owner.headers,
                            json={"config": {"allowed_origins": [ORIGIN]}})
    assert wrong.status_code == 422


# -- sessions ----------------------------------------------------------------------

async def test_sessions_need_an_allowed_origin(api: httpx.AsyncClient, owner: Account) -> None:
    chat = await make_webchat(api, owner)
    ok = await session(api, chat["id"])
    assert ok.status_code == 201, ok.text
    body = ok.json()
    assert body["identified"] is False and body["visitor_id"].startswith("v1.")
    assert body["token"] and body["expires_at"] and uuid.UUID(body["chat_id"])
    other = await session(api, chat["id"], origin=OTHER)
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "origin_not_allowed"
    assert (await session(api, chat["id"], origin=None)).status_code == 403
    assert (await session(api, str(uuid.uuid4()))).status_code == 404
    inbox = await api.post("/v1/integrations", headers=owner.headers,
                           json={"type": "api", "name": "Inbox"})
    assert (await session(api, inbox.json()["id"])).status_code == 404  # not a web chat
    off = await api.patch(f"/v1/integrations/{chat['id']}", headers=owner.headers,
                          json={"is_active": False})
    assert off.status_code == 200

    async def refused() -> bool:
        return (await session(api, chat["id"])).status_code == 404

    await eventually(refused, what="the deactivated web chat refusing sessions")


async def test_anonymous_visitor_resumes_and_forged_ids_are_refused(
        api: httpx.AsyncClient, owner: Account) -> None:
    chat = await make_webchat(api, owner)
    first = await visitor(api, chat["id"])
    again = await visitor(api, chat["id"], visitor_id=first["visitor_id"])
    assert again["chat_id"] == first["chat_id"] and again["visitor_id"] == first["visitor_id"]
    stranger = await visitor(api, chat["id"])
    assert stranger["chat_id"] != first["chat_id"]
    prefix, nonce, _ = first["visitor_id"].split(".")
    for forged in (f"{prefix}.{nonce}.{'0' * 32}", f"{prefix}.{'a' * 32}.{'b' * 32}",
                   "guess", first["visitor_id"] + "x"):
        resp = await session(api, chat["id"], visitor_id=forged)
        assert resp.status_code == 401, forged
        assert resp.json()["error"]["code"] == "unauthorized"
    elsewhere = await make_webchat(api, owner)  # an id is good for its own integration only
    assert (await session(api, elsewhere["id"],
                          visitor_id=first["visitor_id"])).status_code == 401


async def test_identity_verification(api: httpx.AsyncClient, owner: Account) -> None:
    chat = await make_webchat(api, owner, verify=True)
    digest = hmac.new(chat["secret"].encode(), b"customer-42", hashlib.sha256).hexdigest()
    known = await visitor(api, chat["id"], identifier="customer-42", identifier_hash=digest)
    assert known["identified"] is True
    elsewhere = await visitor(api, chat["id"], identifier="customer-42",
                              identifier_hash=digest.upper())  # another device
    assert elsewhere["chat_id"] == known["chat_id"]
    assert elsewhere["visitor_id"] != known["visitor_id"]
    wrong = await session(api, chat["id"], identifier="customer-42", identifier_hash="00" * 32)
    assert wrong.status_code == 401
    other = await session(api, chat["id"], identifier="customer-43", identifier_hash=digest)
    assert other.status_code == 401
    missing = await session(api, chat["id"], identifier="customer-42")
    assert missing.status_code == 401
    anonymous = await visitor(api, chat["id"])
    assert anonymous["identified"] is False and anonymous["chat_id"] != known["chat_id"]

    # Without verification, a bare identifier names no one: it cannot open
    # someone else's chat.
    open_chat = await make_webchat(api, owner)
    claimed = await visitor(api, open_chat["id"], identifier="customer-42")
    assert claimed["identified"] is False
    twice = await visitor(api, open_chat["id"], identifier="customer-42")
    assert twice["chat_id"] != claimed["chat_id"]


# -- messages ----------------------------------------------------------------------

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
    chat = await make_webchat(api, owner)
    me = await visitor(api, chat["id"])
    assert (await say(api, me["token"], "Anyone there?")).status_code == 202
    client = await visitor_ws(stack, me["token"])
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
    chat = await make_webchat(api, owner)
    me = await visitor(api, chat["id"])
    assert (await say(api, me["token"], "one")).status_code == 202
    client = await visitor_ws(stack, me["token"])
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


# -- CORS, limits, bad input ----------------------------------------------------------

async def test_cors_names_allowed_origins_only(api: httpx.AsyncClient, owner: Account) -> None:
    chat = await make_webchat(api, owner)
    path = f"/v1/webchat/{chat['id']}/sessions"
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    ok = await api.options(path, headers={"Origin": ORIGIN, **preflight})
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "content-type" in ok.headers["access-control-allow-headers"].lower()
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert "origin" in ok.headers["vary"].lower()
    refused = await api.options(path, headers={"Origin": OTHER, **preflight})
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers

    created = await session(api, chat["id"])
    assert created.headers["access-control-allow-origin"] == ORIGIN
    assert "origin" in created.headers["vary"].lower()
    other = await session(api, chat["id"], origin=OTHER)
    assert "access-control-allow-origin" not in other.headers
    token = created.json()["token"]

    tokened = await api.options("/v1/webchat/messages", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert tokened.status_code == 204
    assert tokened.headers["access-control-allow-origin"] == ORIGIN
    unknown = await api.options("/v1/webchat/messages", headers={
        "Origin": "https://nobody-allows-this.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in unknown.headers
    listed = await api.get("/v1/webchat/messages", headers=auth(token))
    assert listed.headers["access-control-allow-origin"] == ORIGIN
    invalid = await api.post("/v1/webchat/messages", headers=auth(token), json={"content": ""})
    assert invalid.status_code == 422  # an error the widget can read too
    assert invalid.headers["access-control-allow-origin"] == ORIGIN
    # A same-origin GET carries no Origin: the token alone is enough then.
    bare = await api.get("/v1/webchat/messages", headers={"Authorization": f"Bearer {token}"})
    assert bare.status_code == 200 and "access-control-allow-origin" not in bare.headers
    foreign = await api.get("/v1/webchat/messages", headers=auth(token, OTHER))
    assert foreign.status_code == 403 and "access-control-allow-origin" not in foreign.headers


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


async def test_sessions_are_rate_limited_per_ip_and_integration(
        api: httpx.AsyncClient, owner: Account, stack: Stack) -> None:
    chat = await make_webchat(api, owner)
    path = f"/v1/webchat/{chat['id']}/sessions"
    async with local_app(stack.settings, webchat_sessions_burst_ip=2,
                         webchat_sessions_per_minute_ip=1, webchat_sessions_burst=4,
                         webchat_sessions_per_minute=1) as app:
        async with app.client() as one:
            codes = [(await one.post(path, json={}, headers={"Origin": ORIGIN})).status_code
                     for _ in range(3)]
            assert codes == [201, 201, 429]
        async with app.client() as two:
            assert (await two.post(path, json={}, headers={"Origin": ORIGIN})).status_code == 201
        async with app.client() as three:
            assert (await three.post(path, json={},
                                     headers={"Origin": ORIGIN})).status_code == 201
            limited = await three.post(path, json={}, headers={"Origin": ORIGIN})
            assert limited.status_code == 429  # the integration's 4 are spent
            assert int(limited.headers["retry-after"]) >= 1
            assert limited.headers["access-control-allow-origin"] == ORIGIN
        async with app.client(fresh_ip()) as four:
            assert (await four.post(path, json={}, headers={"Origin": ORIGIN})).status_code \
                == 429


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


async def test_bad_session_bodies_are_4xx(api: httpx.AsyncClient, owner: Account) -> None:
    chat = await make_webchat(api, owner)
    for body in ({"email": "not an email"}, {"name": ""}, {"visitor_id": "x" * 101},
                 {"identifier_hash": "ab"}, {"unknown": True}):
        resp = await session(api, chat["id"], **body)
        assert resp.status_code in (401, 422), (body, resp.text)
    assert (await api.post(f"/v1/webchat/{chat['id']}/sessions", content=b"{",
                           headers={"Origin": ORIGIN,
                                    "Content-Type": "application/json"})).status_code == 400
    assert (await api.post("/v1/webchat/not-a-uuid/sessions", json={},
                           headers={"Origin": ORIGIN})).status_code == 422


# -- the widget's files ----------------------------------------------------------------

async def test_widget_script_is_served_cached_and_gzipped(api: httpx.AsyncClient) -> None:
    plain = await api.get("/widget.js", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("application/javascript")
    assert "content-encoding" not in plain.headers
    assert "attachShadow" in plain.text and "innerHTML" not in plain.text
    etag = plain.headers["etag"]
    assert (await api.get("/widget.js", headers={"If-None-Match": etag})).status_code == 304
    zipped = await api.get("/widget.js", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.text == plain.text  # httpx inflates it
    assert int(zipped.headers["content-length"]) < 30 * 1024
    page = await api.get(f"/widget/test?integration={uuid.uuid4()}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="/widget.js"' in page.text
    assert (await api.get("/widget/test?integration=<script>")).status_code == 422
