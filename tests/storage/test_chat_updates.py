"""What every message does to its chat row leaves the chat's indexes as
they are (migration 022): Postgres makes each such update HOT, a new row
version on the same page with no new index entry, instead of an entry in
each of the chat's indexes per message."""
from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from core.messages import InboundMessage, Sender
from storage import chats, messages, senders
from storage.committer import GroupCommitter, Write
from storage.db import Database
from tests.conftest import Org

GUARD = 15.0
# The columns the per-message writes set (storage.messages INSERT_INBOUND,
# BULK_INBOUND, INSERT_OUTBOUND; storage.chats READ).
PER_MESSAGE = ("last_message_at", "last_inbound_at", "is_unread", "unread_count", "updated_at")


def _message(org: Org, integration: str, thread: str, n: int) -> InboundMessage:
    return InboundMessage(
        organization_id=str(org.id), integration_id=integration, channel="api",
        thread_id=thread, external_id=f"e-{n}", sender=Sender(id=thread, name="Ada"),
        text=f"hello {n}")


async def _open_chats(db: Database, org: Org, threads: list[str]) -> str:
    """Chats (and their contacts) for `threads`, committed; the integration."""
    async with db.tenant_tx(org.id) as conn:
        integration = str(await conn.fetchval(
            "INSERT INTO integrations (organization_id, type, name, config)"
            " VALUES ($1, 'api', 'Inbox', '{}') RETURNING id", org.id))
    at = datetime.now(UTC)
    async with asyncio.timeout(GUARD), GroupCommitter(db) as committer:
        for thread in threads:
            message = _message(org, integration, thread, 0)
            chat_id = chats.chat_id_for(message)
            await committer.commit(org.id, [
                senders.contact_write(str(org.id), message),
                chats.chat_write(str(org.id), chat_id, chats.contact_id_for(message), message,
                                 at),
                messages.inbound_write(str(org.id), chat_id, chats.contact_id_for(message),
                                       message, messages.inbound_id(chat_id, "e-0"), at)])
    return integration


async def _updates(conn: asyncpg.Connection) -> tuple[int, int]:
    """The backend's (updates, HOT updates) of chats not yet reported: this
    transaction's and earlier ones' of the same connection (so: compare)."""
    row = await conn.fetchrow(
        "SELECT pg_stat_get_xact_tuples_updated('chats'::regclass),"
        " pg_stat_get_xact_tuples_hot_updated('chats'::regclass)")
    return int(row[0]), int(row[1])


async def test_no_index_of_chats_holds_a_column_every_message_sets(db: Database) -> None:
    async with db.system_tx() as conn:
        definitions = [r[0] for r in await conn.fetch(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index"
            " WHERE indrelid = 'chats'::regclass")]
    assert len(definitions) >= 7  # the spec's, the uniques, the assignee and title ones
    for definition in definitions:
        named = set(re.findall(r"[a-z_]+", definition.split(" USING ", 1)[1]))
        assert named.isdisjoint(PER_MESSAGE), definition


async def test_a_chats_per_message_updates_are_hot(db: Database, org: Org) -> None:
    threads = [f"t-{n}" for n in range(3)]
    integration = await _open_chats(db, org, threads)
    at = datetime.now(UTC) + timedelta(seconds=1)
    inbound = [_message(org, integration, t, n) for n, t in enumerate(threads, 1)]
    writes = [messages.inbound_write(str(org.id), chats.chat_id_for(m),
                                     chats.contact_id_for(m), m,
                                     messages.inbound_id(chats.chat_id_for(m), m.external_id),
                                     at) for m in inbound]
    first = chats.chat_id_for(inbound[0])
    _, reply = messages.outbound_write(str(org.id), first, str(uuid.uuid4()), "reply",
                                       at + timedelta(seconds=1), user_id=None, agent_id=None)
    read = chats.read_write(str(org.id), first, None, at + timedelta(seconds=2))
    async with db.tenant_tx(org.id) as conn:
        # The group committer's bulk form for the three (one statement over
        # arrays of their arguments), then one message alone, a reply, a read.
        assert writes[0].bulk is not None
        before = await _updates(conn)
        columns = [list(c) for c in zip(*(w.args for w in writes), strict=True)]
        await conn.fetch(writes[0].bulk, *columns)
        alone: Write = messages.inbound_write(
            str(org.id), first, chats.contact_id_for(inbound[0]), _message(
                org, integration, threads[0], 9), messages.inbound_id(first, "e-9"), at)
        await conn.fetch(alone.sql, *alone.args)
        await conn.execute(reply.sql, *reply.args)
        await conn.execute(read.sql, *read.args)
        after = await _updates(conn)
        unread = await conn.fetchval("SELECT unread_count FROM chats WHERE id = $1", first)
    updated, hot = after[0] - before[0], after[1] - before[1]
    assert updated == 6  # three chats by the bulk write, then the first three times more
    assert hot == updated
    assert unread == 0  # the writes did what they do: the read cleared the count
