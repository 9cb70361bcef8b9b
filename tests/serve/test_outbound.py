"""Outbound through the engine: callback URLs the guard refuses (when saved
and when sent to), delivery on the retry schedule (the session's is short:
0, 0.2, 0.4, 0.8 s), and the outbox sweeper re-sending what no live chat
actor will."""
from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from core.settings import Settings
from storage.db import Database
from tests.conftest import Account
from tests.fakes.callback import CallbackServer
from tests.serve.messaging import make_inbox, message, post_inbound
from tests.waiting import eventually

FIELD = "config.callback_url"


async def row(db: Database, owner: Account, message_id: str) -> dict[str, Any]:
    async with db.tenant_tx(owner.org_id) as conn:
        found = await conn.fetchrow(
            "SELECT status, delivery_attempts, next_attempt_at, metadata FROM messages"
            " WHERE id = $1", uuid.UUID(message_id))
    assert found is not None
    return dict(found)


async def has_status(db: Database, owner: Account, message_id: str, status: str) -> bool:
    return (await row(db, owner, message_id))["status"] == status


async def chat_to(api: httpx.AsyncClient, owner: Account, url: str) -> str:
    inbox = await make_inbox(api, owner, url)
    answer = await post_inbound(api, inbox, message(thread="t"))
    assert answer.status_code == 202, answer.text
    return str(answer.json()["chat_id"])


async def send(api: httpx.AsyncClient, owner: Account, chat_id: str, text: str = "hi") -> str:
    resp = await api.post(f"/v1/chats/{chat_id}/messages", json={"content": text},
                          headers=owner.headers)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


# -- the guard ------------------------------------------------------------

@pytest.mark.parametrize(("url", "why"), [
    ("http://10.0.0.5/x", "private"),
    ("http://169.254.169.254/latest", "cloud metadata"),
    ("http://[::1]/", "loopback"),
    ("http://127.0.0.2:9/", "loopback"),  # 127.0.0.1/32 alone is allowed in tests
    ("http://[::ffff:192.168.0.1]/", "private"),
    ("http://100.64.0.7/", "carrier-grade NAT"),
    ("ftp://example.com/drop", "only http and https"),
    ("not a url", "only http and https"),
])
async def test_a_callback_url_inside_is_refused_when_saved(
        api: httpx.AsyncClient, owner: Account, url: str, why: str) -> None:
    resp = await api.post("/v1/integrations", headers=owner.headers,
                          json={"type": "api", "name": "Inbox", "callback_url": url})
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid" and error["details"] == {"field": FIELD}
    assert why in error["message"]
    listed = await api.get("/v1/integrations", headers=owner.headers)
    assert listed.json()["total"] == 0


async def test_a_patch_to_a_url_inside_is_refused(api: httpx.AsyncClient, owner: Account,
                                                  callback: CallbackServer) -> None:
    inbox = await make_inbox(api, owner, callback.url("ok"))
    resp = await api.patch(f"/v1/integrations/{inbox.id}", headers=owner.headers,
                           json={"callback_url": "http://192.168.1.10/hook"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["details"] == {"field": FIELD}
    kept = await api.get(f"/v1/integrations/{inbox.id}", headers=owner.headers)
    assert kept.json()["config"]["callback_url"] == callback.url("ok")


async def test_the_send_checks_again(api: httpx.AsyncClient, owner: Account, db: Database,
                                     callback: CallbackServer) -> None:
    """A URL that got past the save-time check (here: written behind the
    API's back) is refused when the message is sent: failed, once, saying why."""
    inbox = await make_inbox(api, owner, callback.url(f"ok-{uuid.uuid4().hex}"))
    chat_id = (await post_inbound(api, inbox, message(thread="t"))).json()["chat_id"]
    path = f"ok-{uuid.uuid4().hex}"
    async with db.tenant_tx(owner.org_id) as conn:
        await conn.execute(
            "UPDATE integrations SET config = config || $2::jsonb WHERE id = $1",
            uuid.UUID(inbox.id), {"callback_url": f"http://127.0.0.2:{callback.port}/{path}"})
    sent = await send(api, owner, chat_id)
    await eventually(lambda: has_status(db, owner, sent, "failed"), what="failed")
    found = await row(db, owner, sent)
    assert "loopback" in found["metadata"]["error"] and found["delivery_attempts"] == 1


# -- the schedule ---------------------------------------------------------

async def test_retryable_failures_wait_and_keep_the_message_pending(
        api: httpx.AsyncClient, owner: Account, db: Database, callback: CallbackServer,
        settings: Settings) -> None:
    """503 with Retry-After: 1, twice, then 200: three attempts with the same
    webhook-id, a second or more apart, pending in between, then sent."""
    path = f"busy2-{uuid.uuid4().hex}"
    chat_id = await chat_to(api, owner, callback.url(path))
    sent = await send(api, owner, chat_id)

    async def waiting_after_first() -> bool:
        found = await row(db, owner, sent)
        return (found["status"], found["delivery_attempts"]) == ("pending", 1) \
            and found["next_attempt_at"] is not None
    await eventually(waiting_after_first, what="the first retry scheduled")
    assert "503" in (await row(db, owner, sent))["metadata"]["error"]

    await eventually(lambda: has_status(db, owner, sent, "sent"), what="sent")
    posts = callback.for_path(path)
    assert [p.headers["webhook-id"] for p in posts] == [sent] * 3
    gaps = [b.at - a.at for a, b in zip(posts, posts[1:], strict=False)]
    schedule = settings.outbound_retry_schedule
    assert all(gap >= max(1.0, step) for gap, step in zip(gaps, schedule[1:], strict=False)), gaps
    found = await row(db, owner, sent)
    assert found["delivery_attempts"] == 3 and found["next_attempt_at"] is None


async def test_the_last_attempt_fails_with_the_last_error(
        api: httpx.AsyncClient, owner: Account, db: Database, callback: CallbackServer,
        settings: Settings) -> None:
    path = f"down-{uuid.uuid4().hex}"
    chat_id = await chat_to(api, owner, callback.url(path))
    sent = await send(api, owner, chat_id)
    await eventually(lambda: has_status(db, owner, sent, "failed"), what="failed")
    attempts = len(settings.outbound_retry_schedule)
    assert len(callback.for_path(path)) == attempts
    found = await row(db, owner, sent)
    assert found["delivery_attempts"] == attempts
    assert found["metadata"]["error"] == "callback answered 503"


async def test_gone_stops_at_once(api: httpx.AsyncClient, owner: Account, db: Database,
                                  callback: CallbackServer) -> None:
    path = f"gone-{uuid.uuid4().hex}"
    chat_id = await chat_to(api, owner, callback.url(path))
    sent = await send(api, owner, chat_id)
    await eventually(lambda: has_status(db, owner, sent, "failed"), what="failed")
    assert len(callback.for_path(path)) == 1
    assert "410" in (await row(db, owner, sent))["metadata"]["error"]


async def test_a_redirect_is_a_failed_delivery(api: httpx.AsyncClient, owner: Account,
                                               db: Database, callback: CallbackServer) -> None:
    rest = uuid.uuid4().hex
    chat_id = await chat_to(api, owner, callback.url(f"moved-{rest}"))
    sent = await send(api, owner, chat_id)
    await eventually(lambda: has_status(db, owner, sent, "failed"), what="failed")
    assert len(callback.for_path(f"moved-{rest}")) == 1
    assert callback.for_path(f"ok-{rest}") == []
    assert "302" in (await row(db, owner, sent))["metadata"]["error"]


# -- the sweeper ----------------------------------------------------------

async def left_pending(db: Database, owner: Account, chat_id: str, text: str, *,
                       attempts: int = 0, due_in: timedelta | None = None) -> str:
    """An outbound message as a host that died mid-send leaves it: pending,
    written a minute ago, unknown to the (resident) chat actor."""
    message_id = str(uuid.uuid4())
    async with db.system_tx() as conn:
        await conn.execute(
            "INSERT INTO messages (id, chat_id, organization_id, sender_type, content,"
            " is_incoming, is_read, status, delivery_attempts, next_attempt_at, created_at)"
            " VALUES ($1, $2, $3, 'user', $4, false, true, 'pending', $5,"
            " localtimestamp + $6::interval, localtimestamp - interval '1 minute')",
            uuid.UUID(message_id), uuid.UUID(chat_id), uuid.UUID(owner.org_id), text,
            attempts, due_in)
    return message_id


async def test_the_sweeper_sends_what_a_dead_host_left_pending(
        api: httpx.AsyncClient, owner: Account, db: Database,
        callback: CallbackServer) -> None:
    path = f"ok-{uuid.uuid4().hex}"
    chat_id = await chat_to(api, owner, callback.url(path))
    first = await left_pending(db, owner, chat_id, "left behind")
    later = await left_pending(db, owner, chat_id, "not yet", attempts=1, due_in=timedelta(hours=1))
    await eventually(lambda: has_status(db, owner, first, "sent"), timeout=15,
                     what="the left-behind message sent")
    # Another one, sent by a later sweep: by then the first was not sent twice.
    second = await left_pending(db, owner, chat_id, "left behind too")
    await eventually(lambda: has_status(db, owner, second, "sent"), timeout=15,
                     what="the second message sent")
    ids = [p.headers["webhook-id"] for p in callback.for_path(path)]
    assert ids == [first, second]
    assert callback.for_path(path)[0].json["text"] == "left behind"
    assert (await row(db, owner, later))["status"] == "pending"  # its time has not come


async def test_a_restart_continues_the_schedule(
        api: httpx.AsyncClient, owner: Account, db: Database, callback: CallbackServer,
        settings: Settings) -> None:
    """Three of four attempts already made before the crash: one more, then failed."""
    path = f"down-{uuid.uuid4().hex}"
    chat_id = await chat_to(api, owner, callback.url(path))
    attempts = len(settings.outbound_retry_schedule) - 1
    left = await left_pending(db, owner, chat_id, "almost spent", attempts=attempts,
                              due_in=timedelta(minutes=-1))
    await eventually(lambda: has_status(db, owner, left, "failed"), timeout=15,
                     what="failed")
    assert len(callback.for_path(path)) == 1
    assert (await row(db, owner, left))["delivery_attempts"] == attempts + 1


async def test_the_sweep_is_served_by_its_partial_index(db: Database) -> None:
    from actors.outbox import DUE

    async with db.system_tx() as conn:
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {DUE}", 5.0, 1000)
    assert "idx_messages_outbound_due" in str(plan)
