"""Telegram's outbound limits through the running engine, measured on the
fake Bot API's clock (its recorded call times): replies to one chat go out
at the per-chat rate, two chats of one bot together at the bot's cap (the
session stack's settings: 5/s per chat, 7/s per bot), a 429's retry_after
holds the chat's sends (its retry and the messages queued behind it), and
a typing frame on the WebSocket becomes a sendChatAction, at most every 4 s.
And the webhook on the ingress's fast path, answering as its documented route."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx

from core.settings import Settings
from serve.fastpath import FastPath
from serve.stack import Stack
from storage.db import Database
from tests.conftest import Account
from tests.fakes import telegram_updates as tg
from tests.fakes.telegram import Call, FakeTelegram
from tests.serve.local_app import local_app
from tests.serve.messaging import Client
from tests.serve.telegram_bots import connect
from tests.serve.test_telegram import history, post_update
from tests.waiting import eventually


async def new_chat(api: httpx.AsyncClient, owner: Account, integration: dict[str, Any],
                   secret: str, user_id: int) -> tuple[str, int]:
    """A private chat opened by Telegram user `user_id`: (our chat id, Telegram's)."""
    update = tg.private_text("Hi!", sender=tg.user(user_id, f"User{user_id}"))
    assert (await post_update(api, integration["id"], update, secret)).status_code == 200
    chats = (await api.get("/v1/chats?channel=telegram", headers=owner.headers)).json()["data"]
    (chat,) = [c for c in chats if c["channel_thread_id"] == str(user_id)]
    return chat["id"], user_id


async def reply(api: httpx.AsyncClient, owner: Account, chat_id: str, text: str) -> str:
    sent = await api.post(f"/v1/chats/{chat_id}/messages", headers=owner.headers,
                          json={"content": text})
    assert sent.status_code == 202, sent.text
    return str(sent.json()["id"])


async def all_sent(db: Database, owner: Account, chat_id: str, count: int) -> None:
    """Wait for `count` replies of the chat to be `sent` (read from Postgres:
    polling the API for seconds would meet its rate limit)."""
    async def done() -> bool:
        async with db.tenant_tx(owner.org_id) as conn:
            sent = await conn.fetchval(
                "SELECT count(*) FROM messages WHERE chat_id = $1 AND NOT is_incoming"
                " AND status = 'sent'", uuid.UUID(chat_id))
        return bool(sent == count)

    await eventually(done, timeout=60, what=f"{count} replies sent")


def sends_to(fake: FakeTelegram, token: str, chat: int) -> list[Call]:
    return [c for c in fake.calls_of(token, "sendMessage") if c.params["chat_id"] == chat]


def rate(times: list[float]) -> float:
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0])


def assert_near(measured: float, cap: float) -> None:
    assert abs(measured - cap) <= 0.1 * cap, f"{measured:.2f}/s against a cap of {cap}/s"


async def test_replies_to_one_chat_go_at_the_chat_rate(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram,
        settings: Settings, db: Database) -> None:
    integration, token, secret = await connect(api, owner, fake)
    chat_id, chat = await new_chat(api, owner, integration, secret, 5001)
    # Twelve replies, the last split in two: each part waits for its slot.
    for n in range(11):
        await reply(api, owner, chat_id, f"reply {n}")
    await reply(api, owner, chat_id, "x" * 4000 + " " + "y" * 1000)
    await all_sent(db, owner, chat_id, 12)
    calls = sends_to(fake, token, chat)
    assert len(calls) == 13
    assert_near(rate([c.at for c in calls]), settings.telegram_chat_per_second)


async def test_two_chats_of_one_bot_share_the_bot_cap(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram,
        settings: Settings, db: Database) -> None:
    integration, token, secret = await connect(api, owner, fake)
    (first, a), (second, b) = [await new_chat(api, owner, integration, secret, user)
                                for user in (5101, 5102)]
    assert 2 * settings.telegram_chat_per_second > settings.telegram_bot_per_second

    async def replies(chat_id: str) -> None:
        for n in range(14):
            await reply(api, owner, chat_id, f"reply {n}")

    await asyncio.gather(replies(first), replies(second))
    await all_sent(db, owner, first, 14)
    await all_sent(db, owner, second, 14)
    to_a, to_b = ([c.at for c in sends_to(fake, token, chat)] for chat in (a, b))
    # While both chats had replies to send, the bot's cap bound them.
    start, end = max(to_a[0], to_b[0]), min(to_a[-1], to_b[-1])
    both = [t for t in to_a + to_b if start <= t <= end]
    assert len(both) >= 20
    assert_near(rate(both), settings.telegram_bot_per_second)


async def test_retry_after_holds_the_retry_and_the_chat_behind_it(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram, db: Database) -> None:
    integration, token, secret = await connect(api, owner, fake)
    chat_id, chat = await new_chat(api, owner, integration, secret, 5201)
    fake.fail(token, "sendMessage", 429, retry_after=2)
    flooded = await reply(api, owner, chat_id, "first")
    await eventually(lambda: sends_to(fake, token, chat), what="the first attempt")
    queued = await reply(api, owner, chat_id, "second")
    await all_sent(db, owner, chat_id, 2)
    first, *later = sends_to(fake, token, chat)
    assert first.params["text"] == "first"
    assert [c.params["text"] for c in later] == ["first", "second"]  # order kept
    assert all(c.at - first.at >= 2.0 - 0.05 for c in later), \
        [round(c.at - first.at, 3) for c in later]
    rows = {r["id"]: r for r in await history(api, owner, chat_id)}
    assert rows[flooded]["status"] == rows[queued]["status"] == "sent"


async def test_typing_on_the_socket_is_a_chat_action_at_most_every_4_s(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram, stack: Stack) -> None:
    integration, token, secret = await connect(api, owner, fake)
    chat_id, chat = await new_chat(api, owner, integration, secret, 5301)
    agent = await Client.connect(stack.ws_url, owner.access)
    try:
        await agent.subscribe([f"chat:{chat_id}"])
        for _ in range(3):
            await agent.send({"type": "typing", "chat_id": chat_id})
        await agent.send({"type": "ping", "ref": "after"})
        # Frames are handled in order: by the pong, all three were decided.
        await agent.wait_for(lambda f: f.get("type") == "pong")
        (action,) = await eventually(lambda: fake.calls_of(token, "sendChatAction"),
                                     what="the chat action")
        assert action.params["chat_id"] == chat and action.params["action"] == "typing"
        assert len(await agent.wait_count(lambda f: f.get("type") == "typing", 3)) == 3
        assert len(fake.calls_of(token, "sendChatAction")) == 1
        # Still typing: the next one goes 4 s after the first, not before.
        last = 0.0

        async def second_action() -> bool:
            nonlocal last
            if time.monotonic() - last >= 0.5:
                last = time.monotonic()
                await agent.send({"type": "typing", "chat_id": chat_id})
            return len(fake.calls_of(token, "sendChatAction")) >= 2

        await eventually(second_action, timeout=15, what="a second chat action")
        first, second = fake.calls_of(token, "sendChatAction")
        assert 4.0 - 0.05 <= second.at - first.at <= 6.0
    finally:
        await agent.close()


async def test_the_webhook_fast_path_answers_as_the_documented_route(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram) -> None:
    """A canonical integration id takes the fast path; the same id without its
    hyphens goes on to FastAPI's route (which parses it as well): both answer
    alike."""
    integration, _, secret = await connect(api, owner, fake)
    fast_id, slow_id = integration["id"], uuid.UUID(integration["id"]).hex
    unknown = str(uuid.uuid4())
    cases: list[tuple[str, dict[str, Any] | bytes, str | None]] = [
        ("id", tg.private_text("Fast or slow?"), secret),
        ("id", tg.private_text("Again"), "wrong"),
        ("id", tg.private_text("Again"), None),
        ("id", b"{nope", secret),
        ("unknown", tg.private_text("Anyone?"), secret),
    ]
    for target, body, token in cases:
        answers = []
        for integration_id in ((fast_id, slow_id) if target == "id"
                               else (unknown, uuid.UUID(unknown).hex)):
            headers = {"content-type": "application/json"}
            if token is not None:
                headers["X-Telegram-Bot-Api-Secret-Token"] = token
            content = body if isinstance(body, bytes) else json.dumps(body)
            resp = await api.post(f"/v1/channels/telegram/{integration_id}/webhook",
                                  content=content, headers=headers)
            answers.append((resp.status_code, resp.json(), resp.headers["content-type"]))
        assert answers[0] == answers[1], (target, token, answers)
    statuses = []
    for target, body, token in cases:
        headers = {"X-Telegram-Bot-Api-Secret-Token": token} if token else {}
        content = body if isinstance(body, bytes) else json.dumps(body)
        resp = await api.post(f"/v1/channels/telegram/{fast_id if target == 'id' else unknown}"
                              "/webhook", content=content, headers=headers)
        statuses.append(resp.status_code)
    assert statuses == [200, 401, 401, 400, 404]


async def test_the_webhook_is_served_before_fastapi(settings: Settings) -> None:
    passed_on: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        passed_on.append(scope["path"])
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with local_app(settings) as local:
        fast = FastPath(app)

        async def entry(scope: dict[str, Any], receive: Any, send: Any) -> None:
            scope["app"] = local.app  # what Starlette sets before its middleware
            await fast(scope, receive, send)

        transport = httpx.ASGITransport(app=entry)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            unknown = str(uuid.uuid4())
            taken = await client.post(f"/v1/channels/telegram/{unknown}/webhook", content=b"{}")
            assert taken.status_code == 404 and taken.json()["error"]["code"] == "not_found"
            other = await client.post(
                f"/v1/channels/telegram/{uuid.UUID(unknown).hex}/webhook", content=b"{}")
            assert other.status_code == 418
    assert passed_on == [f"/v1/channels/telegram/{uuid.UUID(unknown).hex}/webhook"]
