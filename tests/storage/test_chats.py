"""storage.chats and storage.messages against a real Postgres: derived ids,
the writes a chat turn commits (a redelivery inserts nothing, bumps nothing
and says so), the activation row, and the reads behind the chat API."""
from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from core.errors import Invalid, NotFound
from core.messages import Attachment, InboundMessage, Sender
from storage import chats, messages, senders
from storage.committer import GroupCommitter
from storage.db import Database
from tests.conftest import Org

GUARD = 15.0


async def _integration(db: Database, org: Org) -> str:
    async with db.tenant_tx(org.id) as conn:
        return str(await conn.fetchval(
            "INSERT INTO integrations (organization_id, type, name, config)"
            " VALUES ($1, 'api', 'Inbox', '{}') RETURNING id", org.id))


def _message(org: Org, integration: str, thread: str, external: str,
             sender: str = "s-1", text: str = "hello") -> InboundMessage:
    return InboundMessage(
        organization_id=str(org.id), integration_id=integration, channel="api",
        thread_id=thread, external_id=external, sender=Sender(id=sender, name="Ada Lovelace"),
        text=text)


async def _receive(committer: GroupCommitter, db: Database, org: Org,
                   message: InboundMessage, at: datetime, *, new_chat: bool) -> bool:
    """What a chat turn commits for `message`; whether it was new."""
    chat_id = chats.chat_id_for(message)
    writes = []
    contact_id = chats.contact_id_for(message)
    if new_chat:
        async with db.tenant_tx(org.id) as conn:
            found = await senders.find_contact(conn, message)
        if found is None:
            writes.append(senders.contact_write(str(org.id), message))
        else:
            contact_id = found.contact_id
        writes.append(chats.chat_write(str(org.id), chat_id, contact_id, message, at))
    received = messages.inbound_write(str(org.id), chat_id, contact_id, message,
                                      messages.inbound_id(chat_id, message.external_id), at)
    await committer.commit(org.id, [*writes, received])
    return received.inserted


def test_ids_follow_from_where_a_message_comes_from() -> None:
    org = Org(uuid.uuid4(), "x")
    one = _message(org, "i-1", "thread", "e-1")
    assert chats.chat_id_for(one) == chats.chat_id_for(_message(org, "i-1", "thread", "e-2"))
    assert chats.chat_id_for(one) != chats.chat_id_for(_message(org, "i-1", "other", "e-1"))
    assert chats.chat_id_for(one) != chats.chat_id_for(_message(org, "i-2", "thread", "e-1"))
    chat = chats.chat_id_for(one)
    assert messages.inbound_id(chat, "e-1") == messages.inbound_id(chat, "e-1")
    assert messages.inbound_id(chat, "k") != messages.outbound_id(chat, "k")
    uuid.UUID(messages.inbound_id(chat, "e-1"))


@pytest.mark.parametrize("parts", [
    ("chat", "org", "api", "integration", ""), ("message", "x"), ("contact", "名前 🙂", "\x1f"),
    ("outbound", str(uuid.UUID(int=0)), "k" * 300)])
def test_derived_ids_are_the_uuid5_of_their_parts(parts: tuple[str, ...]) -> None:
    """Ids already stored were made by uuid.uuid5: the fast path gives the same."""
    assert chats.derived_id(*parts) == str(uuid.uuid5(chats.IDS, "\x1f".join(parts)))


async def test_a_redelivery_inserts_nothing_and_says_so(db: Database, org: Org) -> None:
    integration = await _integration(db, org)
    first = _message(org, integration, "t", "e-1")
    at = datetime.now(UTC)
    async with asyncio.timeout(GUARD), GroupCommitter(db) as committer:
        assert await _receive(committer, db, org, first, at, new_chat=True) is True
        assert await _receive(committer, db, org, first, at, new_chat=False) is False
        assert await _receive(committer, db, org, _message(org, integration, "t", "e-2"),
                              at + timedelta(seconds=1), new_chat=False) is True
    chat_id = chats.chat_id_for(first)
    async with db.tenant_tx(org.id) as conn:
        assert await conn.fetchval("SELECT unread_count FROM chats WHERE id = $1",
                                   chat_id) == 2
        types = [r[0] for r in await conn.fetch("SELECT event_type FROM events ORDER BY seq")]
        assert types == ["contact.created", "chat.created", "message.received",
                         "message.received"]
        assert await messages.stored(conn, messages.inbound_id(chat_id, "e-1"))
        assert not await messages.stored(conn, messages.inbound_id(chat_id, "e-3"))
    loaded = await chats.loader(db, recent=1, seen=5).load((str(org.id), chat_id))
    assert loaded is not None
    assert loaded["unread"] == 2 and loaded["seen"] == ["e-2", "e-1"]
    assert [m["content"] for m in loaded["recent"]] == ["hello"] and len(loaded["recent"]) == 1
    assert await chats.loader(db, recent=1, seen=5).load((str(org.id), str(uuid.uuid4()))) \
        is None


async def test_lists_get_and_history(db: Database, org: Org) -> None:
    integration = await _integration(db, org)
    start = datetime.now(UTC)
    async with asyncio.timeout(GUARD), GroupCommitter(db) as committer:
        for n in range(5):
            await _receive(committer, db, org, _message(org, integration, "a", f"a{n}",
                                                        text=f"m{n}"),
                           start + timedelta(seconds=n), new_chat=n == 0)
        other = _message(org, integration, "b", "b0", sender="s-2")
        await _receive(committer, db, org, other, start + timedelta(seconds=9), new_chat=True)
        read_chat = chats.chat_id_for(other)
        await committer.commit(org.id, [chats.read_write(str(org.id), read_chat, None,
                                                         datetime.now(UTC))])
    busy = chats.chat_id_for(_message(org, integration, "a", "a0"))
    async with db.tenant_tx(org.id) as conn:
        total, rows = await chats.list_page(conn, limit=10, offset=0)
        assert total == 2 and [str(r["id"]) for r in rows] == [read_chat, busy]
        assert [str(r["id"]) for r in (await chats.list_page(
            conn, limit=10, offset=0, unread=True))[1]] == [busy]
        assert (await chats.list_page(conn, limit=10, offset=0, unread=False))[0] == 1
        assert (await chats.list_page(conn, limit=10, offset=0, channel="telegram"))[0] == 0
        one = await chats.get(conn, busy)
        assert one["unread_count"] == 5 and one["last_message"]["content"] == "m4"
        assert one["contact_name"] == "Ada Lovelace"
        contact = one["contact_id"]
        assert (await chats.list_page(conn, limit=10, offset=0, channel="api",
                                      contact_id=contact))[0] == 1
        with pytest.raises(NotFound):
            await chats.get(conn, uuid.uuid4())

        seen: list[str] = []
        before = None
        while True:
            page = await messages.history(conn, busy, limit=2, before=before)
            seen += [m["content"] for m in page["data"]]
            before = page["next_cursor"]
            if before is None:
                break
        assert seen == ["m4", "m3", "m2", "m1", "m0"]
        with pytest.raises(Invalid) as bad:
            await messages.history(conn, busy, limit=2, before="garbage")
        assert bad.value.field == "before"
        with pytest.raises(NotFound):
            await messages.history(conn, uuid.uuid4(), limit=2)


async def test_messages_flushed_together_are_stored_as_one_by_one(db: Database, org: Org) -> None:
    """One flush of several chats' messages (the bulk statement): each
    says whether it was new, a chat's unread count rises by each new one,
    the events follow the messages' order, files get their rows, and a
    redelivery (before or within the flush) stores nothing."""
    integration = await _integration(db, org)
    start = datetime.now(UTC)
    photo = Attachment(url="telegram-file:f1", kind="photo", mime_type="image/jpeg", size=7,
                       provider_id="f1")
    one, two = _message(org, integration, "one", "e-0"), _message(org, integration, "two", "e-0")
    batch = [
        msgspec.structs.replace(_message(org, integration, "one", "e-1", text="a"),
                                attachments=(photo,)),
        _message(org, integration, "two", "e-1", text="b"),
        _message(org, integration, "two", "e-0"),  # stored before the flush
        _message(org, integration, "two", "e-2", text="c"),
        _message(org, integration, "two", "e-2", text="c"),  # twice in the flush
    ]
    async with asyncio.timeout(GUARD), GroupCommitter(db) as committer:
        for first in (one, two):
            assert await _receive(committer, db, org, first, start, new_chat=True)
        flushes = committer.stats.flushes
        new = await asyncio.gather(*(
            _receive(committer, db, org, m, start + timedelta(seconds=n + 1), new_chat=False)
            for n, m in enumerate(batch)))
        assert committer.stats.flushes == flushes + 1  # one transaction, one statement
    assert new == [True, True, False, True, False]
    async with db.tenant_tx(org.id) as conn:
        unread = {r["channel_thread_id"]: (r["unread_count"], r["last_message_at"]) for r in
                  await conn.fetch("SELECT channel_thread_id, unread_count, last_message_at"
                                   " FROM chats")}
        assert unread["one"][0] == 2 and unread["two"][0] == 3
        assert unread["two"][1] == start + timedelta(seconds=4)  # the last one written
        received = [(r["payload"]["content"]) for r in await conn.fetch(
            "SELECT payload FROM events WHERE event_type = 'message.received' ORDER BY seq")]
        assert received == ["hello", "hello", "a", "b", "c"]
        files = await conn.fetch("SELECT message_id, file_type, file_size, provider_file_id, kind"
                                 " FROM message_attachments")
    assert [dict(f) for f in files] == [{
        "message_id": uuid.UUID(messages.inbound_id(chats.chat_id_for(batch[0]), "e-1")),
        "file_type": "image/jpeg", "file_size": 7, "provider_file_id": "f1", "kind": "photo"}]


def _rows_read(plan: dict[str, object]) -> int:
    """Rows every node of an EXPLAIN ANALYZE plan produced or filtered away."""
    loops = int(plan.get("Actual Loops", 1))  # type: ignore[call-overload]
    read = (int(plan.get("Actual Rows", 0)) + int(plan.get("Rows Removed by Filter", 0))  # type: ignore[call-overload]
            ) * loops
    return read + sum(_rows_read(p) for p in plan.get("Plans", ()))  # type: ignore[attr-defined]


async def test_a_senders_contact_is_found_by_its_keys_not_by_reading_the_org(
        db: Database, org: Org) -> None:
    integration = await _integration(db, org)
    async with db.tenant_tx(org.id) as conn:
        await conn.execute(
            "INSERT INTO contacts (organization_id, first_name, email, phone)"
            " SELECT $1, 'c' || n, 'c' || n || '@example.com', '+1555' || lpad(n::text, 7, '0')"
            " FROM generate_series(1, 5000) n", org.id)
    async with db.system_tx() as conn:  # with statistics, as autovacuum keeps them
        await conn.execute("ANALYZE contacts, contact_aliases")
    stranger = _message(org, integration, "new-thread", "e-1", sender="stranger")
    by_email = InboundMessage(**{**msgspec.structs.asdict(stranger), "sender": Sender(
        id="mail-1", name="C 7", email="C7@example.com")})
    by_phone = InboundMessage(**{**msgspec.structs.asdict(stranger), "sender": Sender(
        id="wa-1", phone="+1 555 000 0012")})
    async with db.tenant_tx(org.id) as conn:
        assert await senders.find_contact(conn, stranger) is None
        found_email, found_phone = (await senders.find_contact(conn, by_email),
                                    await senders.find_contact(conn, by_phone))
        names = {r["id"]: r["first_name"] for r in await conn.fetch(
            "SELECT id, first_name FROM contacts WHERE first_name IN ('c7', 'c12')")}
        for message in (stranger, by_email, by_phone):
            (plan,) = await conn.fetchval(  # the json codec decodes it
                "EXPLAIN (ANALYZE, FORMAT JSON) " + senders.FIND_CONTACT,
                *senders.find_args(message))
            assert _rows_read(plan["Plan"]) < 100, plan  # of 5,000
    assert found_email is not None and names[uuid.UUID(found_email.contact_id)] == "c7"
    assert found_phone is not None and names[uuid.UUID(found_phone.contact_id)] == "c12"
