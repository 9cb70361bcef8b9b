"""The API channel end to end through Serve: signed inbound -> chat actor ->
group commit -> 202; outbound through the actor to the signed callback;
unread counts, history, events."""
from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable

import httpx
import redis.asyncio as aioredis

from actors.chat import SEEN
from actors.messages import GetState
from actors.outbound import Delivered
from actors.runtime.client import ActorSystem
from channels import signing
from core.messages import Receipt
from core.settings import Settings
from storage.db import Database
from tests.conftest import Account, register
from tests.fakes.callback import CallbackServer
from tests.serve.messaging import make_inbox, message, post_inbound
from tests.waiting import eventually


async def count(db: Database, org_id: str, sql: str, *args: object) -> int:
    async with db.tenant_tx(org_id) as conn:
        return int(await conn.fetchval(sql, *args))


async def status(db: Database, owner: Account, message_id: str) -> str:
    async with db.tenant_tx(owner.org_id) as conn:
        return str(await conn.fetchval("SELECT status FROM messages WHERE id = $1",
                                        uuid.UUID(message_id)))


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def test_inbound_message_creates_contact_chat_and_event(
        api: httpx.AsyncClient, owner: Account, db: Database, settings: Settings) -> None:
    inbox = await make_inbox(api, owner)
    body = message(thread="order-17", text="Is the blue one in stock?",
                   email="grace@example.com")
    resp = await post_inbound(api, inbox, body)
    assert resp.status_code == 202, resp.text
    answer = resp.json()
    assert answer["duplicate"] is False
    # Acknowledged means committed: the row is there the moment we get 202.
    async with db.tenant_tx(owner.org_id) as conn:
        row = await conn.fetchrow(
            "SELECT m.content, m.is_incoming, m.external_id, c.unread_count, c.channel,"
            " c.channel_thread_id, ct.email FROM messages m JOIN chats c ON c.id = m.chat_id"
            " JOIN contacts ct ON ct.id = c.contact_id WHERE m.id = $1", uuid.UUID(answer["id"]))
        types = [r["event_type"] for r in await conn.fetch(
            "SELECT event_type FROM events WHERE chat_id = $1 OR event_type = 'contact.created'"
            " ORDER BY seq", uuid.UUID(answer["chat_id"]))]
    assert row["content"] == "Is the blue one in stock?" and row["is_incoming"]
    assert row["external_id"] == body["external_message_id"]
    assert (row["channel"], row["channel_thread_id"]) == ("api", "order-17")
    assert row["email"] == "grace@example.com" and row["unread_count"] == 1
    assert types == ["contact.created", "chat.created", "message.received"]

    second = await post_inbound(api, inbox, message(thread="order-17", text="Hello?"))
    assert second.json()["chat_id"] == answer["chat_id"]
    chats = (await api.get("/v1/chats", headers=owner.headers)).json()
    assert chats["total"] == 1
    chat = chats["data"][0]
    assert chat["unread_count"] == 2 and chat["last_message"]["content"] == "Hello?"
    assert chat["contact_name"] == "Grace Hopper"
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        key = f"chat:{answer['chat_id']}:unread_count"
        # the mirror writes within a few milliseconds
        await eventually(lambda: _equals(redis.get(key), b"2"), what="the unread mirror")
    finally:
        await redis.aclose()


async def test_five_concurrent_duplicates_store_one_message_and_one_event(
        api: httpx.AsyncClient, owner: Account, db: Database) -> None:
    inbox = await make_inbox(api, owner)
    body = message(thread="dup", external="provider-msg-1")
    answers = await asyncio.gather(*(post_inbound(api, inbox, body) for _ in range(5)))
    assert {r.status_code for r in answers} == {202}
    bodies = [r.json() for r in answers]
    assert len({(b["id"], b["chat_id"]) for b in bodies}) == 1
    assert sorted(b["duplicate"] for b in bodies) == [False, True, True, True, True]
    assert await count(db, owner.org_id, "SELECT count(*) FROM messages") == 1
    assert await count(db, owner.org_id, "SELECT count(*) FROM events"
                       " WHERE event_type = 'message.received'") == 1
    assert await count(db, owner.org_id, "SELECT unread_count FROM chats") == 1


async def test_a_redelivery_older_than_the_dedup_window_is_a_duplicate(
        api: httpx.AsyncClient, owner: Account, db: Database, actors: ActorSystem) -> None:
    # The actor remembers the last SEEN external ids; the first of 600 is
    # past that when it comes again, and only the write can tell.
    assert SEEN < 599
    inbox = await make_inbox(api, owner)
    first_body = message(thread="long", external="ext-first")
    first = await post_inbound(api, inbox, first_body)
    assert first.status_code == 202, first.text
    slots = asyncio.Semaphore(16)

    async def post(n: int) -> int:
        async with slots:
            return (await post_inbound(api, inbox, message(thread="long",
                                                           external=f"ext-{n}"))).status_code

    assert set(await asyncio.gather(*(post(n) for n in range(599)))) == {202}
    again = await post_inbound(api, inbox, first_body)
    assert again.status_code == 202, again.text
    assert again.json() == {**first.json(), "duplicate": True}
    chat_id = first.json()["chat_id"]
    state = await actors.ask("chat", owner.org_id, chat_id, GetState())
    assert state["unread"] == 600
    chat = (await api.get(f"/v1/chats/{chat_id}", headers=owner.headers)).json()
    assert chat["unread_count"] == 600
    assert await count(db, owner.org_id, "SELECT count(*) FROM messages") == 600
    assert await count(db, owner.org_id, "SELECT count(*) FROM events"
                       " WHERE event_type = 'message.received'") == 600


async def test_bad_signatures_are_401_and_store_nothing(
        api: httpx.AsyncClient, owner: Account, db: Database) -> None:
    inbox = await make_inbox(api, owner)
    body = message(thread="x")
    raw = json.dumps(body).encode()
    wrong = await post_inbound(api, inbox, body, secret=signing.new_secret())
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    stale = signing.headers(inbox.secret, "msg_1", raw, now=1_000_000)
    missing = await api.post(inbox.path, content=raw)
    tampered = signing.headers(inbox.secret, "msg_2", raw)
    for resp in (await api.post(inbox.path, content=raw, headers=stale), missing,
                 await api.post(inbox.path, content=raw + b" ", headers=tampered)):
        assert resp.status_code == 401, resp.text
    other = await register(api)
    other_inbox = await make_inbox(api, other)
    crossed = await post_inbound(api, inbox, body, secret=other_inbox.secret)
    assert crossed.status_code == 401
    assert await count(db, owner.org_id, "SELECT count(*) FROM messages") == 0
    assert await count(db, owner.org_id, "SELECT count(*) FROM chats") == 0


async def test_bad_bodies_are_4xx_with_the_envelope(api: httpx.AsyncClient,
                                                    owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    for raw in (b"{not json", b"", b'{"text": "cut'):
        resp = await post_inbound(api, inbox, raw)
        assert resp.status_code == 400, (raw, resp.text)
        assert resp.json()["error"]["code"] == "malformed_json"
    cases: list[bytes | dict[str, object]] = [
        b"[]", {**message(), "extra": 1}, {**message(), "text": ""},
        {**message(), "text": "nul\x00"}, {**message(), "thread_id": "x" * 300},
        {k: v for k, v in message().items() if k != "sender"},
        {**message(), "sender": {"id": 5}}]
    for body in cases:
        resp = await post_inbound(api, inbox, body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json()["error"]["code"] == "invalid"
    unknown = await api.post(f"/v1/channels/api/{uuid.uuid4()}/messages", content=b"{}")
    assert unknown.status_code == 404
    assert (await api.post("/v1/channels/api/not-a-uuid/messages")).status_code == 422


async def test_outbound_reply_is_signed_sent_and_idempotent(
        api: httpx.AsyncClient, owner: Account, db: Database,
        callback: CallbackServer) -> None:
    path = f"ok-{uuid.uuid4().hex}"
    inbox = await make_inbox(api, owner, callback.url(path))
    chat_id = (await post_inbound(api, inbox, message(thread="t"))).json()["chat_id"]
    key = {"Idempotency-Key": "reply-1", **owner.headers}
    first = await api.post(f"/v1/chats/{chat_id}/messages", json={"content": "On its way"},
                           headers=key)
    assert first.status_code == 202, first.text
    sent = first.json()
    assert sent["status"] == "pending" and sent["duplicate"] is False
    again = await api.post(f"/v1/chats/{chat_id}/messages", json={"content": "On its way"},
                           headers=key)
    assert again.json()["id"] == sent["id"] and again.json()["duplicate"] is True
    await eventually(lambda: _equals(status(db, owner, sent["id"]), "sent"), what="sent")
    posts = callback.for_path(path)
    assert len(posts) == 1  # the idempotent retry did not send again
    got = posts[0]
    assert signing.verify([inbox.secret], got.headers, got.body) == sent["id"]
    assert got.json["text"] == "On its way" and got.json["thread_id"] == "t"
    async with db.tenant_tx(owner.org_id) as conn:
        types = [r["event_type"] for r in await conn.fetch(
            "SELECT event_type FROM events WHERE entity_id = $1 ORDER BY seq",
            uuid.UUID(sent["id"]))]
        meta = await conn.fetchval("SELECT metadata FROM messages WHERE id = $1",
                                   uuid.UUID(sent["id"]))
    assert types == ["message.created", "message.status.updated", "message.sent"]
    assert meta["provider_message_id"] == f"ext-{sent['id']}"


async def test_a_rejected_send_fails_and_status_never_moves_back(
        api: httpx.AsyncClient, owner: Account, db: Database, actors: ActorSystem,
        callback: CallbackServer) -> None:
    inbox = await make_inbox(api, owner, callback.url(f"fail400-{uuid.uuid4().hex}"))
    chat_id = (await post_inbound(api, inbox, message(thread="t"))).json()["chat_id"]
    sent = (await api.post(f"/v1/chats/{chat_id}/messages", json={"content": "hi"},
                           headers=owner.headers)).json()
    await eventually(lambda: _equals(status(db, owner, sent["id"]), "failed"), what="failed")
    # A late success report cannot revive it, and a failed one cannot undo "sent".
    assert await actors.ask("chat", owner.org_id, chat_id,
                            Delivered(sent["id"], receipt=Receipt("late"))) == "sent"
    assert await status(db, owner, sent["id"]) == "failed"
    async with db.tenant_tx(owner.org_id) as conn:
        assert await conn.fetchval("SELECT bidi_status_advances('sent', 'pending')") is False
        assert await conn.fetchval("SELECT bidi_status_advances('read', 'delivered')") is False
        assert await conn.fetchval("SELECT bidi_status_advances('pending', 'sent')") is True


async def test_mark_read_clears_unread_and_emits_chat_read(
        api: httpx.AsyncClient, owner: Account, db: Database) -> None:
    inbox = await make_inbox(api, owner)
    chat_id = (await post_inbound(api, inbox, message(thread="r"))).json()["chat_id"]
    await post_inbound(api, inbox, message(thread="r"))
    unread = (await api.get("/v1/chats?unread=true", headers=owner.headers)).json()
    assert [c["id"] for c in unread["data"]] == [chat_id]
    resp = await api.post(f"/v1/chats/{chat_id}/read", headers=owner.headers)
    assert resp.json() == {"chat_id": chat_id, "unread": 0, "changed": True}
    assert (await api.get("/v1/chats?unread=true", headers=owner.headers)).json()["total"] == 0
    assert await count(db, owner.org_id, "SELECT count(*) FROM messages WHERE NOT is_read") == 0
    assert await count(db, owner.org_id,
                       "SELECT count(*) FROM events WHERE event_type = 'chat.read'") == 1


async def test_history_pages_by_cursor_newest_first(api: httpx.AsyncClient,
                                                    owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    chat_id = None
    for n in range(7):
        chat_id = (await post_inbound(api, inbox, message(thread="h", text=f"m{n}"))
                   ).json()["chat_id"]
    seen: list[str] = []
    cursor = None
    while True:
        url = f"/v1/chats/{chat_id}/messages?limit=3" + (f"&before={cursor}" if cursor else "")
        page = (await api.get(url, headers=owner.headers)).json()
        seen += [m["content"] for m in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"m{n}" for n in reversed(range(7))]
    bad = await api.get(f"/v1/chats/{chat_id}/messages?before=garbage", headers=owner.headers)
    assert bad.status_code == 422


async def test_another_orgs_chat_is_404_everywhere(api: httpx.AsyncClient, owner: Account,
                                                   actors: ActorSystem) -> None:
    inbox = await make_inbox(api, owner)
    chat_id = (await post_inbound(api, inbox, message(thread="mine"))).json()["chat_id"]
    intruder = await register(api)
    for method, path, body in (("GET", f"/v1/chats/{chat_id}", None),
                               ("GET", f"/v1/chats/{chat_id}/messages", None),
                               ("POST", f"/v1/chats/{chat_id}/messages", {"content": "x"}),
                               ("POST", f"/v1/chats/{chat_id}/read", None)):
        resp = await api.request(method, path, json=body, headers=intruder.headers)
        assert resp.status_code == 404, (method, path, resp.text)
    mine = (await api.get(f"/v1/chats/{chat_id}", headers=owner.headers)).json()
    assert mine["unread_count"] == 1


async def test_chat_list_filters(api: httpx.AsyncClient, owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    read = (await post_inbound(api, inbox, message(thread="a", email="ann@example.com"))).json()
    unread = (await post_inbound(api, inbox, message(thread="b", sender="s-2",
                                                     email="bob@example.com"))).json()
    assert (await api.post(f"/v1/chats/{read['chat_id']}/read",
                           headers=owner.headers)).status_code == 200

    async def ids(**params: object) -> list[str]:
        resp = await api.get("/v1/chats", params=params, headers=owner.headers)
        assert resp.status_code == 200, resp.text
        return sorted(c["id"] for c in resp.json()["data"])

    both = sorted([read["chat_id"], unread["chat_id"]])
    assert await ids() == both
    assert await ids(unread="true") == [unread["chat_id"]]
    assert await ids(unread="false") == [read["chat_id"]]
    assert await ids(channel="api") == both
    assert await ids(channel="telegram") == []
    contact = (await api.get(f"/v1/chats/{unread['chat_id']}",
                             headers=owner.headers)).json()["contact_id"]
    assert await ids(contact_id=contact, channel="api") == [unread["chat_id"]]
