"""A Telegram bot in polling mode through the running engine, against the
fake Bot API: its poller fetches updates, commits them through the chat
actors, stores the offset and confirms it on the next getUpdates; it rides
out 429s, 409s and dropped connections; a SIGKILL of its host between fetch
and commit loses and doubles nothing; the mode switches both ways; a token
Telegram stops accepting stops it, visibly."""
from __future__ import annotations

import os
import random
import signal
import uuid
from typing import Any

import httpx
import ray

from actors.poller import CURSOR, MAX_BACKOFF, PollerRef, TelegramPoller, backoff
from actors.runtime.client import NAMESPACE, ActorSystem, host_name
from channels.base import MAX_RETRY_AFTER
from storage.db import Database
from tests.conftest import Account
from tests.fakes import telegram_updates as tg
from tests.fakes.telegram import Call, FakeTelegram
from tests.serve.telegram_bots import connect
from tests.waiting import eventually


def sender(n: int) -> dict[str, Any]:
    return tg.user(900_000 + n, f"Buyer{n}")


def texts(n: int, start: int = 0) -> list[dict[str, Any]]:
    """`n` private messages, each from its own person (so its own chat)."""
    return [tg.private_text(f"question {i}", sender=sender(i)) for i in range(start, start + n)]


async def stored(db: Database, owner: Account) -> list[str]:
    async with db.tenant_tx(owner.org_id) as conn:
        rows = await conn.fetch("SELECT content FROM messages WHERE is_incoming"
                                " ORDER BY content")
    return [r["content"] for r in rows]


async def cursor_of(db: Database, owner: Account, integration_id: str) -> int | None:
    async with db.tenant_tx(owner.org_id) as conn:
        value = await conn.fetchval(
            "SELECT position FROM channel_cursors WHERE integration_id = $1::uuid AND name = $2",
            integration_id, CURSOR)
    return None if value is None else int(value)


def offsets(calls: list[Call]) -> list[int | None]:
    return [c.params.get("offset") for c in calls]


async def test_a_polling_bot_receives_and_confirms_its_updates(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram, db: Database) -> None:
    created, token, _ = await connect(api, owner, fake, "polling")
    assert created["config"]["mode"] == "polling" and created["webhook_url"] is None
    assert len(fake.calls_of(token, "deleteWebhook")) == 1  # a bot uses one mode at a time
    assert fake.calls_of(token, "setWebhook") == [] and fake.bot(token).webhook is None
    await eventually(lambda: fake.calls_of(token, "getUpdates"), what="a first getUpdates")
    first = texts(3)
    fake.enqueue(token, *first)
    await eventually(lambda: _len_is(stored(db, owner), 3), what="three messages stored")
    last = first[-1]["update_id"]
    await eventually(lambda: _eq(cursor_of(db, owner, created["id"]), last + 1),
                     what="the offset stored")
    # The next getUpdates confirms them: Telegram drops what is below the offset.
    await eventually(lambda: last + 1 in offsets(fake.calls_of(token, "getUpdates")),
                     what="the offset confirmed")
    second = texts(2, start=3)
    fake.enqueue(token, *second)
    await eventually(lambda: _len_is(stored(db, owner), 5), what="five messages stored")
    assert await stored(db, owner) == [f"question {i}" for i in range(5)]
    chats = (await api.get("/v1/chats?channel=telegram", headers=owner.headers)).json()
    assert chats["total"] == 5
    shown = (await api.get(f"/v1/integrations/{created['id']}", headers=owner.headers)).json()
    assert shown["error"] is None and shown["last_sync_at"] is not None
    sent = offsets(fake.calls_of(token, "getUpdates"))
    assert sent[0] is None and sent == sorted(sent, key=lambda o: o or 0)  # never back


async def test_rate_limits_conflicts_and_drops_are_ridden_out(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram, db: Database,
        actors: ActorSystem) -> None:
    created, token, _ = await connect(api, owner, fake, "polling")
    await eventually(lambda: fake.calls_of(token, "getUpdates"), what="a first getUpdates")
    # The poll under way answers these; the next three calls fail, each its own way.
    fake.fail(token, "getUpdates", 429, retry_after=1)
    fake.fail(token, "getUpdates", 409)
    fake.drop(token, "getUpdates")
    before = texts(2, start=10)
    fake.enqueue(token, *before)
    await eventually(lambda: _len_is(stored(db, owner), 2), what="the first two stored")
    await eventually(lambda: len(fake.calls_of(token, "getUpdates")) >= 5, timeout=30,
                     what="getUpdates again after three failures")
    after = texts(2, start=12)
    fake.enqueue(token, *after)
    await eventually(lambda: _len_is(stored(db, owner), 4), what="all four stored")
    assert await stored(db, owner) == [f"question {i}" for i in range(10, 14)]
    calls = fake.calls_of(token, "getUpdates")
    limited, conflicted, dropped, recovered = calls[1:5]
    assert conflicted.at - limited.at >= 1.0  # retry_after honoured
    assert {c.params.get("offset") for c in (limited, conflicted, dropped, recovered)} == \
        {before[-1]["update_id"] + 1}  # nothing skipped, nothing confirmed early
    state = await PollerRef(actors, owner.org_id, created["id"]).state()
    assert state["polling"] and state["failures"] == 0


async def test_the_poller_killed_between_fetch_and_commit_loses_and_doubles_nothing(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram, db: Database,
        actors: ActorSystem) -> None:
    created, token, _ = await connect(api, owner, fake, "polling")
    warm = texts(1, start=20)
    fake.enqueue(token, *warm)
    await eventually(lambda: _len_is(stored(db, owner), 1), what="the first message stored")
    host = ray.get_actor(host_name(actors.owner(TelegramPoller.kind, created["id"])),
                         namespace=NAMESPACE)
    old_pid = await host.pid.remote()
    held = texts(4, start=21)
    assert db.system is not None
    async with db.system.acquire() as lock, lock.transaction():
        # Every insert for this org checks its organization row: a FOR UPDATE
        # on it holds each commit of the batch the poller fetched.
        await lock.execute("SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE",
                           uuid.UUID(owner.org_id))
        fake.enqueue(token, *held)
        await eventually(lambda: _waiting_on_a_lock(db), what="a commit held on the lock")
        os.kill(old_pid, signal.SIGKILL)
    last = held[-1]["update_id"]
    await eventually(lambda: _eq(cursor_of(db, owner, created["id"]), last + 1), timeout=90,
                     what="the poller back and the offset stored")
    assert await host.pid.remote() != old_pid
    assert await stored(db, owner) == [f"question {i}" for i in range(20, 25)]
    async with db.tenant_tx(owner.org_id) as conn:
        doubled = await conn.fetchval(
            "SELECT count(*) - count(DISTINCT external_id) FROM messages WHERE is_incoming")
    assert doubled == 0
    # The held updates were fetched again after the restart: never confirmed before.
    again = [c for c in fake.calls_of(token, "getUpdates")
             if c.params.get("offset") == held[0]["update_id"]]
    assert len(again) >= 2


async def test_a_backlog_stores_its_offset_once_a_second_and_the_last_at_once(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram, db: Database,
        actors: ActorSystem) -> None:
    """Full batches (more waiting) confirm each offset to Telegram with the
    next call but store it at most once a second; the batch that empties
    the queue stores its offset at once."""
    created, token, _ = await connect(api, owner, fake, "polling")
    await eventually(lambda: fake.calls_of(token, "getUpdates"), what="a first getUpdates")
    poller = PollerRef(actors, owner.org_id, created["id"])
    backlog = texts(350, start=100)
    fake.delay(token, "getUpdates", 0.3, times=3)  # the calls after the first take a while
    fake.enqueue(token, *backlog)

    async def lagging() -> dict[str, Any] | None:
        state = await poller.state()
        ahead = state["cursor"] is not None and state["stored_cursor"] is not None \
            and int(state["cursor"]) > int(state["stored_cursor"])
        return state if ahead else None
    state = await eventually(lagging, timeout=30, what="an offset confirmed but not yet stored")
    await eventually(lambda: int(state["cursor"]) in offsets(fake.calls_of(token, "getUpdates")),
                     what="the offset confirmed to Telegram by the next call")
    last = backlog[-1]["update_id"]
    await eventually(lambda: _eq(cursor_of(db, owner, created["id"]), last + 1), timeout=30,
                     what="the last offset stored")
    assert len(await stored(db, owner)) == 350
    assert (await poller.state())["stored_cursor"] == str(last + 1)


async def test_switching_webhook_to_polling_and_back(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram, db: Database,
        actors: ActorSystem) -> None:
    created, token, _ = await connect(api, owner, fake, mode="webhook")
    poller = PollerRef(actors, owner.org_id, created["id"])
    assert len(fake.calls_of(token, "setWebhook")) == 1
    assert fake.calls_of(token, "getUpdates") == [] and not await poller.ensure()
    url = f"/v1/integrations/{created['id']}"
    to_polling = await api.patch(url, headers=owner.headers, json={"config": {"mode": "polling"}})
    assert to_polling.status_code == 200, to_polling.text
    assert to_polling.json()["config"]["mode"] == "polling"
    assert len(fake.calls_of(token, "deleteWebhook")) == 1 and fake.bot(token).webhook is None
    fake.enqueue(token, *texts(1, start=30))
    await eventually(lambda: _len_is(stored(db, owner), 1), what="a message by polling")
    to_webhook = await api.patch(url, headers=owner.headers, json={"config": {"mode": "webhook"}})
    assert to_webhook.status_code == 200, to_webhook.text
    assert to_webhook.json()["config"]["mode"] == "webhook"
    setting = fake.calls_of(token, "setWebhook")
    assert len(setting) == 2 and fake.bot(token).webhook is not None
    assert (await poller.state())["polling"] is False
    polled = len(fake.calls_of(token, "getUpdates"))
    assert not await poller.ensure()  # a wake (as the sweeper's) finds it in webhook mode
    assert len(fake.calls_of(token, "getUpdates")) == polled
    # The same mode again changes nothing at Telegram.
    same = await api.patch(url, headers=owner.headers, json={"config": {"mode": "webhook"}})
    assert same.status_code == 200 and len(fake.calls_of(token, "setWebhook")) == 2


async def test_a_mode_is_checked(api: httpx.AsyncClient, owner: Account,
                                 fake: FakeTelegram) -> None:
    created, _, _ = await connect(api, owner, fake, "polling")
    url = f"/v1/integrations/{created['id']}"
    for bad in ({"mode": "pigeon"}, {}, {"mode": "polling", "bot_token": "x"}):
        resp = await api.patch(url, headers=owner.headers, json={"config": bad})
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["code"]
    inbox = await api.post("/v1/integrations", headers=owner.headers,
                           json={"type": "api", "name": "Inbox"})
    resp = await api.patch(f"/v1/integrations/{inbox.json()['id']}", headers=owner.headers,
                           json={"config": {"mode": "polling"}})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["details"]["field"] == "config.mode"


async def test_a_revoked_token_stops_the_poller_and_shows_on_the_integration(
        api: httpx.AsyncClient, owner: Account, fake: FakeTelegram, db: Database,
        actors: ActorSystem) -> None:
    created, token, _ = await connect(api, owner, fake, "polling")
    poller = PollerRef(actors, owner.org_id, created["id"])
    await eventually(lambda: fake.calls_of(token, "getUpdates"), what="a first getUpdates")
    fake.fail(token, "getUpdates", 401, "Unauthorized")  # the owner revoked the token
    fake.enqueue(token, *texts(1, start=40))  # ends the poll under way
    await eventually(lambda: _len_is(stored(db, owner), 1), what="the message stored")
    url = f"/v1/integrations/{created['id']}"

    async def failing() -> Any:
        return (await api.get(url, headers=owner.headers)).json()["error"]

    error = await eventually(failing, what="the integration showing the error")
    assert error.startswith("token_refused") and token not in error
    shown = (await api.get(url, headers=owner.headers)).json()
    assert shown["is_active"] and shown["error_at"] is not None
    assert (await poller.state())["polling"] is False
    polled = len(fake.calls_of(token, "getUpdates"))
    assert not await poller.ensure()  # the sweeper's wake does not retry a refused token
    assert len(fake.calls_of(token, "getUpdates")) == polled
    # Switched off and on (a new token would be a new integration): tried afresh.
    for active in (False, True):
        resp = await api.patch(url, headers=owner.headers, json={"is_active": active})
        assert resp.status_code == 200, resp.text
    assert resp.json()["error"] is None
    await eventually(lambda: len(fake.calls_of(token, "getUpdates")) > polled,
                     what="polling again")
    assert (await poller.state())["polling"]


# -- helpers ------------------------------------------------------------------

async def _len_is(rows: Any, n: int) -> bool:
    return len(await rows) == n


async def _eq(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _waiting_on_a_lock(db: Database) -> bool:
    async with db.system_tx() as conn:
        return bool(await conn.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"))



def test_the_backoff_honours_retry_after_and_is_capped() -> None:
    rng = random.Random(7)
    assert backoff(1, retry_after=3.0, rng=rng) == 3.0
    assert backoff(1, retry_after=10 ** 9, rng=rng) == MAX_RETRY_AFTER
    steps = [backoff(n, rng=rng) for n in range(1, 12)]
    assert 0.375 <= steps[0] <= 0.5 and steps[1] > steps[0]
    assert max(steps) <= MAX_BACKOFF and steps[-1] >= 0.75 * MAX_BACKOFF
