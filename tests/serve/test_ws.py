"""WebSocket live chat and the event relay, through Serve's ingress: tenant
isolation, resume with `since` (none missing, none twice), per-chat order,
relay and host crashes, close codes and error frames."""
from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections import Counter

import httpx
import ray

from actors.relay import RELAY_NAME
from actors.runtime.client import NAMESPACE, host_name
from serve.stack import Stack
from storage.db import Database
from tests.conftest import Account, register
from tests.serve.messaging import Client, make_inbox, message, post_inbound


def received(client: Client) -> list[str]:
    return [e["data"]["content"] for e in client.events("message.received")]


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
    await asyncio.sleep(0.2)
    second = await Client.connect(stack.ws_url, owner.access)
    await second.subscribe(["org"], since=last)
    await task
    await second.wait_count(lambda f: f.get("event_type") == "message.received",
                            total - len(got_first), timeout=120)
    await asyncio.sleep(0.3)  # anything extra (a duplicate) would arrive by now
    everything = got_first + received(second)
    assert len(everything) == total
    assert Counter(everything) == Counter(str(k) for k in range(total))
    seqs = [e["seq"] for e in first.events() + second.events()]
    assert len(seqs) == len(set(seqs))
    await second.close()


async def test_per_chat_order_is_kept_under_concurrent_senders(
        api: httpx.AsyncClient, owner: Account, stack: Stack, db: Database) -> None:
    inbox = await make_inbox(api, owner)
    ws = await Client.connect(stack.ws_url, owner.access)
    await ws.subscribe(["org"])

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
    inbox = await make_inbox(api, owner)
    ws = await Client.connect(stack.ws_url, owner.access)
    await ws.subscribe(["org"])
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
    frames = await ws.wait_count(lambda f: f.get("event_type") == "message.received", total,
                                 timeout=120)
    await asyncio.sleep(0.5)
    assert sorted(int(f["data"]["content"]) for f in ws.events("message.received")) \
        == list(range(total))
    assert len(frames) == total
    assert await relay.pid.remote() != pid
    await ws.close()


async def test_killing_a_host_mid_stream_loses_nothing_acknowledged(
        api: httpx.AsyncClient, owner: Account, stack: Stack, db: Database) -> None:
    inbox = await make_inbox(api, owner)
    ws = await Client.connect(stack.ws_url, owner.access)
    await ws.subscribe(["org"])
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
    assert uuid.UUID(first["chat_id"])
