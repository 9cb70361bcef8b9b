"""A session is its member's: removing or demoting a member ends their access
tokens and WebSockets at once; a WebSocket lives no longer than its token;
events carry only data the caller may read."""
from __future__ import annotations

import time
import uuid

import httpx
import redis.asyncio as aioredis

from core.security import issue_access_token
from core.settings import Settings
from serve.stack import Stack
from storage.db import Database
from tests.conftest import Account
from tests.serve.messaging import Client, make_inbox, message, post_inbound
from tests.serve.test_members import join
from tests.serve.test_rbac import make_key


async def test_removal_ends_tokens_and_websockets_at_once(api: httpx.AsyncClient,
                                                          owner: Account,
                                                          stack: Stack) -> None:
    member = await join(api, owner, "bidi")
    ws = await Client.connect(stack.ws_url, member.access)
    await ws.subscribe(["org"])
    assert (await api.get("/v1/contacts", headers=member.headers)).status_code == 200
    assert (await api.delete(f"/v1/members/{member.user_id}",
                             headers=owner.headers)).status_code == 204
    code, reason = await ws.wait_closed(timeout=1.5)
    assert code == 4401 and "revoked" in reason
    refused = await api.get("/v1/contacts", headers=member.headers)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    again = await api.post("/v1/auth/refresh", json={"refresh_token": member.refresh})
    assert again.status_code == 401
    # A fresh connection with the old token is refused too.
    late = await Client.connect(stack.ws_url, member.access)
    assert (await late.wait_closed())[0] == 4401


async def test_demotion_takes_effect_at_once(api: httpx.AsyncClient, owner: Account,
                                             stack: Stack) -> None:
    admin = await join(api, owner, "admin")
    ws = await Client.connect(stack.ws_url, admin.access)
    await ws.subscribe(["org"])
    assert (await api.get("/v1/audit-logs", headers=admin.headers)).status_code == 200
    assert (await api.patch(f"/v1/members/{admin.user_id}", json={"role": "viewer"},
                            headers=owner.headers)).status_code == 200
    assert (await ws.wait_closed(timeout=1.5))[0] == 4401
    assert (await api.get("/v1/audit-logs", headers=admin.headers)).status_code == 401
    # Refreshing gives a token of the new role, which works.
    fresh = await api.post("/v1/auth/refresh", json={"refresh_token": admin.refresh})
    assert fresh.status_code == 200, fresh.text
    headers = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
    assert (await api.get("/v1/audit-logs", headers=headers)).status_code == 403
    assert (await api.get("/v1/contacts", headers=headers)).status_code == 200


async def test_websocket_closes_when_its_token_expires(owner: Account, stack: Stack,
                                                       settings: Settings) -> None:
    secret = settings.jwt_secret.get_secret_value()
    short = issue_access_token(secret, owner.user_id, owner.org_id, "owner", ttl=2)
    ws = await Client.connect(stack.ws_url, short)
    await ws.subscribe(["org"])
    code, reason = await ws.wait_closed(timeout=10)
    assert code == 4401 and "expired" in reason
    # With a fresh token sent in time, the connection lives on past the first:
    # a twin left on the short token shows when that moment has passed.
    short = issue_access_token(secret, owner.user_id, owner.org_id, "owner", ttl=2)
    renewed = await Client.connect(stack.ws_url, short)
    twin = await Client.connect(stack.ws_url, short)
    await renewed.send({"type": "auth", "ref": "a",
                        "token": issue_access_token(secret, owner.user_id, owner.org_id,
                                                    "owner")})
    assert (await renewed.wait_for(lambda f: f.get("ref") == "a"))["type"] == "authed"
    assert (await twin.wait_closed(timeout=10))[0] == 4401
    await renewed.send({"type": "ping", "ref": "p"})
    await renewed.wait_for(lambda f: f.get("ref") == "p")
    assert renewed.closed is None
    # A token of another user is refused and changes nothing.
    other = issue_access_token(secret, str(uuid.uuid4()), owner.org_id, "owner")
    await renewed.send({"type": "auth", "ref": "b", "token": other})
    assert (await renewed.wait_for(lambda f: f.get("ref") == "b"))["type"] == "error"
    await renewed.close()


async def test_events_carry_only_what_the_caller_may_read(api: httpx.AsyncClient,
                                                          owner: Account,
                                                          stack: Stack) -> None:
    member = await join(api, owner, "bidi")
    ws_owner = await Client.connect(stack.ws_url, owner.access)
    ws_member = await Client.connect(stack.ws_url, member.access)
    await ws_owner.subscribe(["org"])
    await ws_member.subscribe(["org"])
    inbox = await make_inbox(api, owner)  # integration.created: admins only
    key = await make_key(api, owner, {"crm:read", "org:read"})  # api_key.created
    assert (await api.post("/v1/contacts", json={"first_name": "Ada"},
                           headers=owner.headers)).status_code == 201
    assert (await post_inbound(api, inbox, message(text="secret deal terms"))).status_code == 202
    for ws in (ws_owner, ws_member):
        await ws.wait_for(lambda f: f.get("event_type") == "message.received")
    owner_types = {e["event_type"] for e in ws_owner.events()}
    member_types = {e["event_type"] for e in ws_member.events()}
    assert {"integration.created", "api_key.created", "contact.created",
            "message.received"} <= owner_types
    assert {"contact.created", "message.received"} <= member_types
    assert not {"integration.created", "api_key.created"} & member_types
    # A key with crm:read lists contact events, never message text.
    listed = await api.get("/v1/events", params={"limit": 1000}, headers={"X-API-Key": key})
    assert listed.status_code == 200, listed.text
    types = {e["event_type"] for e in listed.json()["data"]}
    assert "contact.created" in types and "member.joined" in types
    assert not any(t.startswith(("message.", "chat.", "integration.", "api_key."))
                   for t in types)
    assert "secret deal terms" not in listed.text
    # A replay on the WebSocket is filtered the same way.
    replay = await Client.connect(stack.ws_url, member.access)
    await replay.subscribe(["org"], since=0)
    assert not {"integration.created", "api_key.created"} & {
        e["event_type"] for e in replay.events()}
    for ws in (ws_owner, ws_member, replay):
        await ws.close()


async def test_websocket_limits(api: httpx.AsyncClient, owner: Account, stack: Stack,
                                settings: Settings, db: Database) -> None:
    inbox = await make_inbox(api, owner)
    assert (await post_inbound(api, inbox, message())).status_code == 202
    ws = await Client.connect(stack.ws_url, owner.access)
    await ws.subscribe(["org"], since=0)
    # mark_read of a chat that does not exist is refused (no actor is woken).
    await ws.send({"type": "mark_read", "chat_id": str(uuid.uuid4()), "ref": "m"})
    error = await ws.wait_for(lambda f: f.get("ref") == "m")
    assert error["type"] == "error" and "no such chat" in error["error"]["message"]
    # message.send shares the REST route's rate limit.
    chat_id = ws.events("message.received")[0]["chat_id"]
    assert settings.redis_url is not None
    redis = aioredis.from_url(settings.redis_url)
    try:
        await redis.hset(f"rate_limit:api:user:{owner.user_id}:POST:/v1/chats/{{chat_id}}"
                         "/messages", mapping={"tokens": "0", "ts": str(time.time())})
    finally:
        await redis.aclose()
    await ws.send({"type": "message.send", "chat_id": chat_id, "content": "hi", "ref": "s"})
    limited = await ws.wait_for(lambda f: f.get("ref") == "s")
    assert limited["type"] == "error" and limited["error"]["code"] == "rate_limited"
    await ws.close()
    # A replay reaches back at most 10,000 events (and is refused before it
    # joins anything: this connection gets none of them live).
    ws = await Client.connect(stack.ws_url, owner.access)
    async with db.system_tx() as conn:
        first = await conn.fetchval(
            "INSERT INTO events (organization_id, event_type, payload)"
            " SELECT $1, 'contact.updated', '{}'::jsonb FROM generate_series(1, 10001)"
            " RETURNING seq", uuid.UUID(owner.org_id))
    await ws.send({"type": "subscribe", "topics": ["org"], "since": first - 1, "ref": "r"})
    refused = await ws.wait_for(lambda f: f.get("ref") == "r", timeout=30)
    assert refused["type"] == "error" and refused["error"]["code"] == "invalid"
    assert "10000" in refused["error"]["message"]
    # Replays per connection are few: the tenth more in a row is refused.
    codes = []
    for n in range(11):
        await ws.send({"type": "subscribe", "topics": ["org"], "since": 0, "ref": f"x{n}"})
    for n in range(11):
        frame = await ws.wait_for(lambda f, n=n: f.get("ref") == f"x{n}", timeout=60)
        codes.append(frame["error"]["code"] if frame["type"] == "error" else frame["type"])
    assert "rate_limited" in codes, codes
    # A flood of frames is paced, then cut off.
    flood = await Client.connect(stack.ws_url, owner.access)
    for n in range(400):
        await flood.send({"type": "ping", "ref": n})
    code, _ = await flood.wait_closed()
    assert code == 4029
    assert any(f.get("type") == "error" and f["error"]["code"] == "rate_limited"
               for f in flood.frames)
    await ws.close()
