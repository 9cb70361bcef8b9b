"""storage.notes without HTTP: a note belongs to a contact or a deal of the
org, is written with its audit row and `note.created`, and is authored by
the transaction's signed-in user (none for a caller that is not a user)."""
from __future__ import annotations

import uuid

import pytest

from core.errors import NotFound
from storage import contacts, notes
from storage.audit import Actor
from storage.db import Database
from tests.conftest import Org, create_org
from tests.storage.trail import last_seq, member, trail


async def test_a_note_on_a_contact(db: Database, org: Org) -> None:
    actor = await member(db, org)
    async with db.tenant_tx(org.id) as conn:
        contact = await contacts.create(conn, actor, {"first_name": "N"})
    after = await last_seq(db, org)
    async with db.tenant_tx(org.id, actor.user_id) as conn:
        by_user = await notes.add(conn, actor, "contact", contact["id"], "met at the fair")
    async with db.tenant_tx(org.id) as conn:  # an API key, an agent, a job
        by_key = await notes.add(conn, actor, "contact", contact["id"], "sent the deck")
        listed = await notes.of(conn, "contact", contact["id"])
    assert by_user["author_id"] == uuid.UUID(actor.user_id)
    assert by_key["author_id"] is None
    assert [n["body"] for n in listed] == ["met at the fair", "sent the deck"]
    found = await trail(db, org, after)
    assert [(e["event_type"], e["payload"]["body"]) for e in found.events] == [
        ("note.created", "met at the fair"), ("note.created", "sent the deck")]
    assert found.audit[-1]["changes"] == {"contact_id": str(contact["id"])}


async def test_a_note_needs_a_parent_of_the_org(db: Database, org: Org) -> None:
    other = await create_org(db)
    async with db.tenant_tx(other.id) as conn:
        theirs = await contacts.create(conn, Actor(str(other.id)), {"first_name": "T"})
    for parent, parent_id in (("contact", theirs["id"]), ("deal", uuid.uuid4())):
        with pytest.raises(NotFound):
            async with db.tenant_tx(org.id) as conn:
                await notes.add(conn, Actor(str(org.id)), parent, parent_id, "x")
    with pytest.raises(ValueError):
        async with db.tenant_tx(org.id) as conn:
            await notes.of(conn, "chat", theirs["id"])  # type: ignore[arg-type]
    assert (await trail(db, org)).audit == []
