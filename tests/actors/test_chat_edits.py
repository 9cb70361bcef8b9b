"""A chat keeps every edit of a message beside the original (a redelivered
edit is one revision), stores an edit of a message it never got as that
message, and, once its channel says the recipient is gone, refuses sends
at once with `recipient_unreachable` until it is reachable again."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from actors.refs import Accepted, ChatRef
from actors.runtime.client import ActorSystem
from core.errors import Unreachable
from core.messages import InboundMessage, MessageEdit, Sender, ThreadState
from storage import messages
from storage.db import Database
from tests.conftest import Org

SENT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def _integration(db: Database, org: Org) -> str:
    async with db.tenant_tx(org.id) as conn:
        found = await conn.fetchval(
            "INSERT INTO integrations (organization_id, type, name, config)"
            " VALUES ($1, 'telegram', 'bot', '{}') RETURNING id", org.id)
    return str(found)


def _message(org: Org, integration: str, thread: str, external: str,
             text: str) -> InboundMessage:
    return InboundMessage(organization_id=str(org.id), integration_id=integration,
                          channel="telegram", thread_id=thread, external_id=external,
                          sender=Sender(id="42", name="Ada"), text=text, sent_at=SENT)


def _edit(org: Org, integration: str, thread: str, external: str, text: str,
          minutes: int) -> MessageEdit:
    return MessageEdit(organization_id=str(org.id), integration_id=integration, channel="telegram",
                       thread_id=thread, external_id=external, sender=Sender(id="42"),
                       text=text, edited_at=SENT + timedelta(minutes=minutes))


async def _opened(actors: ActorSystem, db: Database, org: Org, thread: str,
                  text: str) -> tuple[str, ChatRef, Accepted]:
    """A chat opened by message "1" of `thread`: its integration, ref and first message."""
    integration = await _integration(db, org)
    first = _message(org, integration, thread, "1", text)
    chat = ChatRef.of(actors, first)
    return integration, chat, await chat.inbound(first)


async def _history(db: Database, org: Org, chat_id: str) -> list[dict[str, object]]:
    async with db.tenant_tx(org.id) as conn:
        page = await messages.history(conn, chat_id, limit=50)
    return list(page["data"])


async def test_edits_are_kept_as_revisions_beside_the_original(
        actors: ActorSystem, db: Database, org: Org) -> None:
    integration, chat, stored = await _opened(actors, db, org, "100", "see you at 10")
    edit = _edit(org, integration, "100", "1", "see you at 11", 1)
    accepted = await chat.edit(edit)
    assert accepted == {"id": stored["id"], "chat_id": stored["chat_id"], "duplicate": False}
    assert (await chat.edit(edit))["duplicate"] is True  # Telegram delivered it again
    await chat.edit(_edit(org, integration, "100", "1", "see you at noon", 2))
    (row,) = await _history(db, org, stored["chat_id"])
    assert row["content"] == "see you at 10"  # as it came
    assert [r["content"] for r in row["revisions"]] == ["see you at 11", "see you at noon"]
    assert row["edited_at"] is not None
    async with db.tenant_tx(org.id) as conn:
        edited = await conn.fetch(
            "SELECT payload FROM events WHERE event_type = 'message.edited' AND chat_id = $1",
            uuid.UUID(stored["chat_id"]))
    assert [e["payload"]["content"] for e in edited] == ["see you at 11", "see you at noon"]
    assert (await chat.state())["recent"][-1]["content"] == "see you at noon"


async def test_an_edit_of_a_message_never_received_is_stored_as_the_message(
        actors: ActorSystem, db: Database, org: Org) -> None:
    integration = await _integration(db, org)
    edit = _edit(org, integration, "200", "7", "sent before the bot was connected", 3)
    accepted = await ChatRef.of(actors, edit).edit(edit)
    assert accepted["duplicate"] is False
    (row,) = await _history(db, org, accepted["chat_id"])
    assert row["content"] == "sent before the bot was connected" and row["revisions"] == []


async def test_an_unreachable_recipient_refuses_sends_at_once(
        actors: ActorSystem, db: Database, org: Org) -> None:
    integration, chat, stored = await _opened(actors, db, org, "300", "hi")
    blocked = ThreadState(organization_id=str(org.id), integration_id=integration,
                          channel="telegram", thread_id="300", reachable=False,
                          reason="bot blocked by the user")
    assert (await chat.set_reachable(blocked))["unreachable_reason"] == "bot blocked by the user"
    with pytest.raises(Unreachable, match="bot blocked"):
        await chat.send("are you there?", None)
    async with db.tenant_tx(org.id) as conn:
        row = await conn.fetchrow("SELECT unreachable_reason, unreachable_at FROM chats"
                                  " WHERE id = $1", uuid.UUID(stored["chat_id"]))
        updates = await conn.fetchval(
            "SELECT count(*) FROM events WHERE event_type = 'chat.updated' AND chat_id = $1",
            uuid.UUID(stored["chat_id"]))
    assert row["unreachable_reason"] == "bot blocked by the user"
    assert row["unreachable_at"] is not None and updates == 1
    await chat.set_reachable(blocked)  # said again: nothing changes, no second event
    back = ThreadState(organization_id=str(org.id), integration_id=integration, channel="telegram",
                       thread_id="300", reachable=True)
    assert (await chat.set_reachable(back))["unreachable_reason"] is None
    sent = await chat.send("welcome back", None)
    assert sent["status"] == "pending"
