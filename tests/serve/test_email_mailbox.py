"""A mailbox's poller through the running engine, against a real Dovecot:
the first import reads only the last days, IDLE brings new mail to a
WebSocket within 2 s, mail is never marked read, a SIGKILL of the poller's
host mid-round loses and doubles nothing, a changed UIDVALIDITY resyncs
without duplicates, a refused password shows on the integration and heals,
and switching the integration off stops the poller."""
from __future__ import annotations

import imaplib
import os
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import ray

from actors.mailbox import UID, VALIDITY, MailboxPoller
from actors.polling import KINDS, PollerRef
from actors.runtime.client import NAMESPACE, ActorSystem, host_name
from serve.stack import Stack
from storage.db import Database
from tests.conftest import Account
from tests.peers.dovecot import Dovecot, MailUser
from tests.peers.smtp import SmtpPeer
from tests.serve.mailboxes import chats_of, config, connect, inbound_count, mail, person
from tests.serve.messaging import Client
from tests.waiting import eventually


def poller(actors: ActorSystem, owner: Account, integration: dict[str, object]) -> PollerRef:
    return PollerRef(actors, owner.org_id, str(integration["id"]), KINDS["email"])


async def count_is(db: Database, owner: Account, count: int) -> bool:
    return await inbound_count(db, owner) == count


async def contents(db: Database, owner: Account) -> list[str]:
    async with db.tenant_tx(owner.org_id) as conn:
        rows = await conn.fetch("SELECT content FROM messages WHERE is_incoming ORDER BY content")
    return [r["content"] for r in rows]


async def cursor(db: Database, owner: Account, integration_id: str, name: str) -> int | None:
    async with db.tenant_tx(owner.org_id) as conn:
        value = await conn.fetchval("SELECT position FROM channel_cursors"
                                    " WHERE integration_id = $1::uuid AND name = $2",
                                    integration_id, name)
    return None if value is None else int(value)


def append_dated(dovecot: Dovecot, user: MailUser, raw: bytes, when: datetime) -> None:
    """APPEND with an internal date (what SEARCH SINCE reads) in the past."""
    client = imaplib.IMAP4(dovecot.host, dovecot.port)
    try:
        client.login(user.address, user.password)
        client.append("INBOX", "", imaplib.Time2Internaldate(when.timestamp()), raw)
    finally:
        client.logout()


async def test_the_first_import_reads_the_last_days_then_follows_the_folder(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer, actors: ActorSystem) -> None:
    box = dovecot.add_user()
    ann = person()
    old = datetime.now(UTC) - timedelta(days=30)
    append_dated(dovecot, box, mail(ann, box.address, "Old", "from last month", date=old)[0], old)
    recent = datetime.now(UTC) - timedelta(days=2)
    append_dated(dovecot, box, mail(ann, box.address, "Recent", "from this week",
                                    date=recent)[0], recent)
    resp = await api.post("/v1/integrations", headers=owner.headers, json={
        "type": "email", "name": "Inbox", "config": config(dovecot, smtp_peer, box,
                                                           smtp_peer.add_user())})
    assert resp.status_code == 201, resp.text
    integration = resp.json()
    assert "password" not in str(integration["config"])
    await eventually(lambda: count_is(db, owner, 1), what="the recent message imported")
    assert await contents(db, owner) == ["from this week"]
    new = dovecot.append(box, mail(ann, box.address, "New", "arrived now")[0])
    await eventually(lambda: count_is(db, owner, 2), what="new mail fetched")
    # The cursor moves once the round that stored the message has committed.
    await eventually(lambda: _eq(cursor(db, owner, integration["id"], UID), new),
                     what="the cursor past the new message")
    # BODY.PEEK: the mailbox's owner still sees it unread
    assert "\\Seen" not in dovecot.flags(box, new)
    state = await poller(actors, owner, integration).state()
    assert state["polling"] and state["idle"] in (True, False) and state["skipped"] == []


async def test_idle_brings_new_mail_to_a_websocket_within_two_seconds(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer, actors: ActorSystem, stack: Stack) -> None:
    integration, box = await connect(api, owner, dovecot, smtp_peer)
    ref = poller(actors, owner, integration)
    await eventually(lambda: _idle(ref), what="the poller idling")
    ws = await Client.connect(stack.ws_url, owner.access)
    try:
        await ws.subscribe(["org"])
        for n in range(3):
            text = f"idle check {n} {uuid.uuid4().hex[:6]}"
            started = time.monotonic()
            dovecot.deliver(box, mail(person(), box.address, "Hi", text)[0])
            await ws.wait_for(lambda f, t=text: f.get("event_type") == "message.received"
                              and f["data"]["content"] == t, timeout=2.0)
            assert time.monotonic() - started < 2.0
            await eventually(lambda: _idle(ref), what="idling again")
    finally:
        await ws.close()


async def _idle(ref: PollerRef) -> bool:
    return bool((await ref.state())["idle"])


async def test_the_poller_killed_mid_round_backfills_with_no_loss_and_no_duplicate(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer, actors: ActorSystem) -> None:
    integration, box = await connect(api, owner, dovecot, smtp_peer)
    dovecot.append(box, mail(person(), box.address, "Warm", "warm-up")[0])
    await eventually(lambda: count_is(db, owner, 1), what="the first message stored")
    host = ray.get_actor(host_name(actors.owner(MailboxPoller.kind, integration["id"])),
                         namespace=NAMESPACE)
    old_pid = await host.pid.remote()
    assert db.system is not None
    async with db.system.acquire() as lock, lock.transaction():
        # Every insert for this org checks its organization row: a FOR UPDATE
        # on it holds each commit of the round the poller fetched.
        await lock.execute("SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE",
                           uuid.UUID(owner.org_id))
        last = 0
        for n in range(30):
            last = dovecot.append(box, mail(person(), box.address, "Batch", f"held {n:02}")[0])
        await eventually(lambda: _waiting_on_a_lock(db), what="a commit held on the lock")
        os.kill(old_pid, signal.SIGKILL)
    await eventually(lambda: _eq(cursor(db, owner, integration["id"], UID), last), timeout=90,
                     what="the poller back and the last UID stored")
    assert await host.pid.remote() != old_pid
    assert await contents(db, owner) == sorted(["warm-up", *(f"held {n:02}" for n in range(30))])
    async with db.tenant_tx(owner.org_id) as conn:
        doubled = await conn.fetchval(
            "SELECT count(*) - count(DISTINCT external_id) FROM messages WHERE is_incoming")
    assert doubled == 0


async def _waiting_on_a_lock(db: Database) -> bool:
    assert db.system is not None
    async with db.system.acquire() as conn:
        return bool(await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"))


async def _eq(value: object, expected: object) -> bool:
    return await value == expected  # type: ignore[misc]


async def test_a_changed_uidvalidity_resyncs_without_duplicates(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer, actors: ActorSystem) -> None:
    integration, box = await connect(api, owner, dovecot, smtp_peer)
    no_id = b"From: nobody@client.test\r\nTo: x@y\r\nSubject: no id\r\n\r\nwithout a Message-ID\r\n"
    for n in range(3):
        dovecot.append(box, mail(person(), box.address, "Before", f"before {n}")[0])
    dovecot.append(box, no_id)
    await eventually(lambda: count_is(db, owner, 4), what="four stored")
    before = await cursor(db, owner, integration["id"], VALIDITY)
    ref = poller(actors, owner, integration)
    await ref.stop()
    validity = dovecot.change_uidvalidity(box)
    assert validity != before
    dovecot.append(box, mail(person(), box.address, "After", "after the rebuild")[0])
    assert await ref.ensure()
    await eventually(lambda: _eq(cursor(db, owner, integration["id"], VALIDITY), validity),
                     what="the new UIDVALIDITY stored")
    await eventually(lambda: count_is(db, owner, 5), what="the new message stored")
    assert await contents(db, owner) == sorted(
        ["after the rebuild", "before 0", "before 1", "before 2", "without a Message-ID"])
    await eventually(lambda: _eq(cursor(db, owner, integration["id"], UID),
                                 max(dovecot.uids(box))), what="the cursor at the last UID")


async def test_a_changed_password_shows_on_the_integration_and_heals(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer, actors: ActorSystem) -> None:
    integration, box = await connect(api, owner, dovecot, smtp_peer)
    ref = poller(actors, owner, integration)
    await eventually(lambda: _idle(ref), what="the poller idling")
    dovecot.set_password(box.address, "changed-elsewhere")
    dovecot.kick(box)  # the server drops the session; the next login is refused

    async def failing() -> str | None:
        resp = await api.get(f"/v1/integrations/{integration['id']}", headers=owner.headers)
        return resp.json()["error"]
    error = await eventually(failing, what="the integration showing the failure")
    assert "login" in error.lower() and "changed-elsewhere" not in error
    assert (await ref.state())["polling"]  # it keeps trying
    path = f"/v1/integrations/{integration['id']}"
    wrong = await api.patch(path, headers=owner.headers,
                            json={"config": {"imap": {"password": "still-wrong"}}})
    assert wrong.status_code == 422, wrong.text
    assert wrong.json()["error"]["details"]["field"] == "config.imap.password"
    fixed = await api.patch(path, headers=owner.headers,
                            json={"config": {"imap": {"password": "changed-elsewhere"}}})
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["error"] is None and "changed-elsewhere" not in fixed.text
    now = MailUser(box.address, "changed-elsewhere")
    dovecot.append(now, mail(person(), box.address, "Back", "back again")[0])
    await eventually(lambda: count_is(db, owner, 1), what="mail read with the new password")
    # A server that refuses, then takes the old password again, heals by itself too.
    dovecot.set_password(box.address, "changed-again")
    dovecot.kick(box)
    await eventually(failing, what="the failure shown again")
    dovecot.set_password(box.address, "changed-elsewhere")
    dovecot.append(now, mail(person(), box.address, "Back", "back once more")[0])
    await eventually(lambda: count_is(db, owner, 2), timeout=60, what="mail read again")
    assert (await api.get(path, headers=owner.headers)).json()["error"] is None


async def test_switching_the_integration_off_stops_its_poller(
        api: httpx.AsyncClient, owner: Account, db: Database, dovecot: Dovecot,
        smtp_peer: SmtpPeer, actors: ActorSystem) -> None:
    integration, box = await connect(api, owner, dovecot, smtp_peer)
    ref = poller(actors, owner, integration)
    await eventually(lambda: _idle(ref), what="the poller idling")
    resp = await api.patch(f"/v1/integrations/{integration['id']}", headers=owner.headers,
                           json={"is_active": False})
    assert resp.status_code == 200, resp.text
    assert not (await ref.state())["polling"]
    dovecot.append(box, mail(person(), box.address, "Off", "while off")[0])
    assert not await ref.ensure()  # the sweeper's wake does not start it either
    resp = await api.patch(f"/v1/integrations/{integration['id']}", headers=owner.headers,
                           json={"is_active": True})
    assert resp.status_code == 200
    await eventually(lambda: count_is(db, owner, 1), what="the mail read once on again")
    assert (await chats_of(db, owner))[0]["messages"][0]["content"] == "while off"
