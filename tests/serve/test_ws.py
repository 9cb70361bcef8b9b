"""WebSocket live chat and the event relay, through Serve's ingress: tenant
isolation, resume with `since` (none missing, none twice), per-chat order,
relay and host crashes, close codes and error frames."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import uuid
from collections import Counter
from typing import Any

import httpx
import ray
import redis.asyncio as aioredis
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.uri import parse_uri

from actors.relay import RELAY_NAME
from actors.runtime.client import NAMESPACE, host_name
from core.settings import Settings
from serve.stack import Stack
from storage.db import Database
from tests.conftest import Account, register
from tests.serve.messaging import Client, Inbox, make_inbox, message, post_inbound
from tests.waiting import eventually


async def listening(api: httpx.AsyncClient, owner: Account,
                    stack: Stack) -> tuple[Inbox, Client]:
    """An API inbox of `owner`'s org and a WebSocket on the org's events."""
    inbox = await make_inbox(api, owner)
    ws = await Client.connect(stack.ws_url, owner.access)
    await ws.subscribe(["org"])
    return inbox, ws


def received(client: Client) -> list[str]:
    return [e["data"]["content"] for e in client.events("message.received")
            if not e["data"]["content"].startswith("sentinel-")]


async def sentinel(api: httpx.AsyncClient, inbox: Inbox, *clients: Client) -> None:
    """One more message, awaited on `clients`: events come in commit order, so
    anything still due (a duplicate, a stray) would have come before it."""
    text = f"sentinel-{uuid.uuid4().hex}"
    assert (await post_inbound(api, inbox, message(thread="sentinel", text=text))
            ).status_code == 202
    for client in clients:
        await client.wait_for(lambda f: f.get("event_type") == "message.received"
                              and f["data"]["content"] == text)


async def test_two_orgs_never_see_each_others_events(api: httpx.AsyncClient,
                                                      stack: Stack) -> None:
    a, b = await register(api), await register(api)
    inbox_a, inbox_b = await make_inbox(api, a), await make_inbox(api, b)
    ws_a = await Client.connect(stack.ws_url, a.access)
    ws_b = await Client.connect(stack.ws_url, b.access)
    await ws_a.subscribe(["org"])
    await ws_b.subscribe(["org"])
    for n in range(10):
        await post_inbound(api, inbox_a, message(thread="a", text=f"a{n}"))
        await post_inbound(api, inbox_b, message(thread="b", text=f"b{n}"))
    await ws_a.wait_count(lambda f: f.get("event_type") == "message.received", 10)
    await ws_b.wait_count(lambda f: f.get("event_type") == "message.received", 10)
    assert received(ws_a) == [f"a{n}" for n in range(10)]
    assert received(ws_b) == [f"b{n}" for n in range(10)]
    assert {e["organization_id"] for e in ws_a.events()} == {a.org_id}
    assert {e["organization_id"] for e in ws_b.events()} == {b.org_id}
    # Naming the other org's topics closes the connection with 4403.
    chat_b = ws_b.events("message.received")[0]["chat_id"]
    await ws_a.send({"type": "subscribe", "topics": [f"chat:{chat_b}"]})
    assert (await ws_a.wait_closed())[0] == 4403
    await ws_b.send({"type": "subscribe", "topics": [f"org:{a.org_id}"]})
    assert (await ws_b.wait_closed())[0] == 4403


async def test_resume_after_a_disconnect_misses_nothing_and_repeats_nothing(
        api: httpx.AsyncClient, owner: Account, stack: Stack) -> None:
    inbox = await make_inbox(api, owner)
    first = await Client.connect(stack.ws_url, owner.access)
    await first.subscribe(["org"])
    total = 1000
    sent = 0

    async def producer(start: int, stop: int) -> None:
        nonlocal sent
        for n in range(start, stop, 8):
            batch = [post_inbound(api, inbox, message(thread=f"t{k % 7}", text=str(k)))
                     for k in range(n, min(n + 8, stop))]
            assert {r.status_code for r in await asyncio.gather(*batch)} == {202}
            sent += len(batch)

    task = asyncio.create_task(producer(0, total))
    await first.wait_count(lambda f: f.get("event_type") == "message.received", 300)
    await first.close()  # drops mid-stream; messages keep coming
    last = first.events()[-1]["seq"]
    got_first = received(first)
    second = await Client.connect(stack.ws_url, owner.access)
    await second.subscribe(["org"], since=last)
    await task
    await second.wait_count(lambda f: f.get("event_type") == "message.received",
                            total - len(got_first), timeout=120)
    await sentinel(api, inbox, second)
    everything = got_first + received(second)
    assert len(everything) == total
    assert Counter(everything) == Counter(str(k) for k in range(total))
    seqs = [e["seq"] for e in first.events() + second.events()]
    assert len(seqs) == len(set(seqs))
    await second.close()


async def test_per_chat_order_is_kept_under_concurrent_senders(
        api: httpx.AsyncClient, owner: Account, stack: Stack, db: Database) -> None:
    inbox, ws = await listening(api, owner, stack)

    async def sender(name: str) -> None:
        for n in range(40):
            resp = await post_inbound(api, inbox, message(thread="shared", text=f"{name}:{n}",
                                                          sender=name))
            assert resp.status_code == 202

    await asyncio.gather(*(sender(f"s{i}") for i in range(4)))
    frames = await ws.wait_count(lambda f: f.get("event_type") == "message.received", 160)
    texts = [f["data"]["content"] for f in frames]
    for name in ("s0", "s1", "s2", "s3"):
        mine = [int(t.split(":")[1]) for t in texts if t.startswith(name + ":")]
        assert mine == list(range(40))
    async with db.tenant_tx(owner.org_id) as conn:
        stored = [r["content"] for r in await conn.fetch(
            "SELECT content FROM messages ORDER BY created_at, id")]
    assert stored == texts  # the WebSocket order is the chat's commit order
    await ws.close()


async def test_killing_the_relay_mid_stream_loses_nothing(
        api: httpx.AsyncClient, owner: Account, stack: Stack) -> None:
    inbox, ws = await listening(api, owner, stack)
    total = 300

    async def produce() -> None:
        for n in range(0, total, 6):
            await asyncio.gather(*(post_inbound(api, inbox, message(thread="k", text=str(k)))
                                   for k in range(n, n + 6)))

    task = asyncio.create_task(produce())
    await ws.wait_count(lambda f: f.get("event_type") == "message.received", 50)
    relay = ray.get_actor(RELAY_NAME, namespace=NAMESPACE)
    pid = await relay.pid.remote()
    os.kill(pid, signal.SIGKILL)  # Ray restarts it; it resumes from its cursor
    await task
    await ws.wait_count(lambda f: f.get("event_type") == "message.received", total,
                        timeout=120)
    await sentinel(api, inbox, ws)
    assert sorted(int(text) for text in received(ws)) == list(range(total))
    assert await relay.pid.remote() != pid
    await ws.close()


async def test_killing_a_host_mid_stream_loses_nothing_acknowledged(
        api: httpx.AsyncClient, owner: Account, stack: Stack, db: Database) -> None:
    inbox, ws = await listening(api, owner, stack)
    acknowledged: list[str] = []

    async def produce(worker: int) -> None:
        for n in range(40):
            text = f"{worker}-{n}"
            resp = await post_inbound(api, inbox, message(thread=f"h{worker}", text=text))
            if resp.status_code == 202:
                acknowledged.append(text)

    task = asyncio.gather(*(produce(w) for w in range(6)))
    await ws.wait_count(lambda f: f.get("event_type") == "message.received", 40)
    host = ray.get_actor(host_name(0), namespace=NAMESPACE)
    os.kill(await host.pid.remote(), signal.SIGKILL)
    await task
    assert len(acknowledged) >= 200  # callers retry while the host restarts
    async with db.tenant_tx(owner.org_id) as conn:
        stored = {r["content"] for r in await conn.fetch("SELECT content FROM messages")}
    assert set(acknowledged) <= stored
    await ws.wait_count(lambda f: f.get("event_type") == "message.received", len(stored),
                        timeout=60)
    assert Counter(received(ws)) == Counter(stored)
    await ws.close()


async def test_bad_token_is_4401_and_bad_frames_get_error_frames(
        api: httpx.AsyncClient, owner: Account, stack: Stack) -> None:
    bad = await Client.connect(stack.ws_url, "not-a-token")
    assert (await bad.wait_closed())[0] == 4401
    ws = await Client.connect(stack.ws_url, owner.access)
    frames = ("{nope", "[1]", '{"type": "dance"}', '{"type": "subscribe"}',
                  '{"type": "subscribe", "topics": ["org"], "since": -1}',
              '{"type": "message.send", "chat_id": "x", "content": "hi"}')
    for n, frame in enumerate(frames, 1):
        await ws.ws.send(frame)
        errors = await ws.wait_count(lambda f: f.get("type") == "error", n)
        assert errors[-1]["error"]["code"] == "invalid", errors[-1]
    await ws.send({"type": "ping", "ref": 7})
    assert (await ws.wait_for(lambda f: f.get("type") == "pong"))["ref"] == 7
    unknown = await Client.connect(stack.ws_url, owner.access)
    await unknown.send({"type": "subscribe", "topics": ["org"], "since": 2**40})
    error = await unknown.wait_for(lambda f: f.get("type") == "error")
    assert "since" in error["error"]["message"]
    await ws.close()
    await unknown.close()


async def test_send_typing_and_mark_read_over_the_socket(
        api: httpx.AsyncClient, owner: Account, stack: Stack) -> None:
    inbox = await make_inbox(api, owner)
    chat_id = (await post_inbound(api, inbox, message(thread="live"))).json()["chat_id"]
    agent = await Client.connect(stack.ws_url, owner.access)
    watcher = await Client.connect(stack.ws_url, owner.access)
    await agent.subscribe([f"chat:{chat_id}"])
    await watcher.subscribe([f"chat:{chat_id}", "org"])
    await agent.send({"type": "typing", "chat_id": chat_id})
    typing = await watcher.wait_for(lambda f: f.get("type") == "typing")
    assert typing["chat_id"] == chat_id and typing["user_id"] == owner.user_id
    await agent.send({"type": "message.send", "chat_id": chat_id, "content": "Hi there",
                      "ref": "r1"})
    ack = await agent.wait_for(lambda f: f.get("type") == "message.ack")
    assert ack["ref"] == "r1" and ack["message"]["status"] == "pending"
    created = await watcher.wait_for(lambda f: f.get("event_type") == "message.created")
    assert created["data"]["content"] == "Hi there"
    await agent.send({"type": "mark_read", "chat_id": chat_id})
    assert (await agent.wait_for(lambda f: f.get("type") == "read.ack"))["unread"] == 0
    await watcher.wait_for(lambda f: f.get("event_type") == "chat.read")
    chat = (await api.get(f"/v1/chats/{chat_id}", headers=owner.headers)).json()
    assert chat["unread_count"] == 0
    # Subscribed to both the chat and the org, the watcher still gets each event once.
    seqs = [e["seq"] for e in watcher.events()]
    assert len(seqs) == len(set(seqs))
    await agent.close()
    await watcher.close()


async def test_events_route_pages_in_commit_order(api: httpx.AsyncClient,
                                                  owner: Account) -> None:
    inbox = await make_inbox(api, owner)
    for n in range(5):
        await post_inbound(api, inbox, message(thread="e", text=f"e{n}"))
    since, texts, seqs = 0, [], []
    while True:
        page = (await api.get(f"/v1/events?since={since}&limit=2", headers=owner.headers)).json()
        if not page["data"]:
            break
        seqs += [e["seq"] for e in page["data"]]
        texts += [e["data"]["content"] for e in page["data"]
                  if e["event_type"] == "message.received"]
        since = page["next_since"]
    assert texts == [f"e{n}" for n in range(5)] and len(seqs) == len(set(seqs))
    other = await register(api)
    crossed = await api.get(f"/v1/events?since={seqs[0]}", headers=other.headers)
    assert crossed.status_code == 422


async def test_chat_topic_resume_replays_only_that_chat(
        api: httpx.AsyncClient, owner: Account, stack: Stack) -> None:
    inbox = await make_inbox(api, owner)
    first = (await post_inbound(api, inbox, message(thread="c1", text="c1-0"))).json()
    await post_inbound(api, inbox, message(thread="c2", text="c2-0"))
    for n in range(1, 4):
        await post_inbound(api, inbox, message(thread="c1", text=f"c1-{n}"))
        await post_inbound(api, inbox, message(thread="c2", text=f"c2-{n}"))
    events = (await api.get("/v1/events?since=0&limit=1000", headers=owner.headers)).json()
    start = next(e["seq"] for e in events["data"] if e["event_type"] == "message.received")
    ws = await Client.connect(stack.ws_url, owner.access)
    await ws.subscribe([f"chat:{first['chat_id']}"], since=start)
    frames = await ws.wait_count(lambda f: f.get("event_type") == "message.received", 3)
    assert [f["data"]["content"] for f in frames] == ["c1-1", "c1-2", "c1-3"]
    await ws.close()


async def test_relay_feeds_the_stream_the_chat_and_user_topics_and_saves_its_cursor(
        api: httpx.AsyncClient, owner: Account, settings: Settings, db: Database) -> None:
    inbox = await make_inbox(api, owner)
    chat_id = (await post_inbound(api, inbox, message(thread="s"))).json()["chat_id"]
    redis = aioredis.Redis.from_url(settings.redis_url)
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(f"chat:{chat_id}:messages", f"user:{owner.user_id}:notifications")
        for _ in range(2):  # both subscription confirmations
            await pubsub.get_message(timeout=5)
        tail = (await redis.xrevrange("bidi:events", count=1) or [(b"0-0", {})])[0][0]
        reply = await post_inbound(api, inbox, message(thread="s", text="to the chat"))
        async with db.tenant_tx(owner.org_id) as conn:
            seq = await conn.fetchval(
                "INSERT INTO events (organization_id, event_type, payload) VALUES"
                " ($1, 'deal.assigned', $2) RETURNING seq", uuid.UUID(owner.org_id),
                {"notify_user_ids": [owner.user_id]})
        got: dict[bytes, dict[str, object]] = {}
        async with asyncio.timeout(20):
            while len(got) < 2:
                item = await pubsub.get_message(timeout=1)
                if item and item["type"] == "message":
                    got[item["channel"]] = json.loads(item["data"])
        assert got[f"chat:{chat_id}:messages".encode()]["data"]["id"] == reply.json()["id"]
        assert got[f"user:{owner.user_id}:notifications".encode()]["seq"] == seq
        entries = await redis.xrange("bidi:events", min=f"({tail.decode()}")
        seqs = [json.loads(fields[b"event"])["seq"] for _, fields in entries]
        assert seq in seqs and seqs == sorted(set(seqs), key=seqs.index)
        async def saved() -> bool:  # copied to Postgres about once a second
            async with db.system_tx() as conn:
                found = await conn.fetchval("SELECT seq FROM relay_cursors WHERE name = 'main'")
            return found is not None and found >= seq

        await eventually(saved, what="the relay cursor in Postgres")
    finally:
        await pubsub.aclose()
        await redis.aclose()


async def test_a_client_too_slow_to_read_is_closed_and_resumes(
        owner: Account, stack: Stack, db: Database, settings: Settings) -> None:
    # A client that stops reading, for real: sans-I/O WebSocket over a socket
    # with a small receive buffer and a stream reader that stops pulling.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect((stack.settings.host, stack.settings.port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock, limit=16384)
    slow = ClientProtocol(parse_uri(f"{stack.ws_url}?token={owner.access}"), max_size=None)
    slow.send_request(slow.connect())

    async def pump(until: Any) -> None:
        while not until():
            for chunk in slow.data_to_send():
                writer.write(chunk)
            data = await reader.read(65536)
            if not data:
                slow.receive_eof()
                return
            slow.receive_data(data)

    texts: list[str] = []

    def collected() -> bool:
        texts.extend(f.data.decode() for f in slow.events_received()
                     if getattr(f, "opcode", None) == Opcode.TEXT)
        return any('"subscribed"' in t for t in texts) or slow.close_rcvd is not None

    await pump(lambda: slow.handshake_exc is not None or slow.state.name == "OPEN")
    slow.send_text(json.dumps({"type": "subscribe", "topics": ["org"]}).encode())
    await pump(collected)
    total = 6000
    async with db.tenant_tx(owner.org_id) as conn:
        await conn.execute(
            "INSERT INTO events (organization_id, event_type, payload)"
            " SELECT $1, 'test.bulk', jsonb_build_object('n', g, 'pad', repeat('x', 20000))"
            " FROM generate_series(1, $2) g", uuid.UUID(owner.org_id), total)
        last = await conn.fetchval("SELECT max(seq) FROM events")
    redis = aioredis.Redis.from_url(settings.redis_url)
    async def published() -> bool:
        cursor = await redis.get("bidi:relay:main:cursor") or b"0:0"
        return int(cursor.split(b":")[1]) >= last

    try:  # the client reads nothing while the relay publishes them all
        await eventually(published, timeout=120, what="the relay publishing")
    finally:
        await redis.aclose()
    # Socket buffers filled, then the bounded backlog: the engine closed the
    # connection with 4008, naming where to resume; the close frame comes
    # after what was already buffered.
    async with asyncio.timeout(120):
        await pump(lambda: (collected() and False) or slow.close_rcvd is not None)
    writer.close()
    assert slow.close_rcvd is not None and slow.close_rcvd.code == 4008
    received_bulk = sum('"test.bulk"' in t for t in texts)
    assert received_bulk < total
    resume = int(slow.close_rcvd.reason.rsplit("since=", 1)[1])
    fresh = await Client.connect(stack.ws_url, owner.access)
    await fresh.subscribe(["org"], since=resume)
    frames = await fresh.wait_count(lambda f: f.get("event_type") == "test.bulk", 1, timeout=60)
    first = frames[0]["data"]["n"]
    assert first == received_bulk + 1  # right after the last one it got: none lost, none twice
    tail = await fresh.wait_count(lambda f: f.get("event_type") == "test.bulk",
                                  total - first + 1, timeout=120)
    assert [f["data"]["n"] for f in tail] == list(range(first, total + 1))
    await fresh.close()


async def test_unsubscribe_stops_the_stream(api: httpx.AsyncClient, owner: Account,
                                            stack: Stack) -> None:
    inbox = await make_inbox(api, owner)
    ws = await Client.connect(stack.ws_url, owner.access)
    watcher = await Client.connect(stack.ws_url, owner.access)
    await ws.subscribe(["org"])
    await watcher.subscribe(["org"])
    await post_inbound(api, inbox, message(thread="u", text="before"))
    await ws.wait_for(lambda f: f.get("event_type") == "message.received")
    await ws.send({"type": "unsubscribe", "topics": ["org"], "ref": "u1"})
    await ws.wait_for(lambda f: f.get("ref") == "u1")
    await post_inbound(api, inbox, message(thread="u", text="after"))
    await sentinel(api, inbox, watcher)  # the watcher has had "after" and more
    await ws.send({"type": "ping", "ref": "p"})
    await ws.wait_for(lambda f: f.get("type") == "pong")  # frames to ws come in order
    assert received(ws) == ["before"] and received(watcher) == ["before", "after"]
    await ws.close()
    await watcher.close()
