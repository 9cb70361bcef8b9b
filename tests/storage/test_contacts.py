"""storage.contacts without HTTP: each mutation's audit row and event commit
with it, the org's rules hold (unique email, tenant-visible company), search
and filters page the same in a caller's transaction and in one of its own,
and the import commits chunk by chunk with a per-row report."""
from __future__ import annotations

import uuid

import pytest

from core.errors import Conflict, Invalid, NotFound
from storage import companies, contacts
from storage.audit import Actor
from storage.contacts import ContactFilters
from storage.db import Database
from storage.rows import Page
from tests.conftest import Org, create_org
from tests.storage.trail import last_seq, member, trail


async def test_create_writes_the_contact_its_audit_row_and_event(db: Database, org: Org) -> None:
    actor = await member(db, org)
    async with db.tenant_tx(org.id) as conn:
        contact = await contacts.create(conn, actor, {
            "first_name": "Ada", "email": "ada@example.com", "tags": ["b", "a", "b"],
            "phone": None})
    assert contact["tags"] == ["a", "b"] and contact["phone"] is None
    assert contact["metadata"] == {}
    found = await trail(db, org)
    assert found.audit == [{"action": "contact.create", "resource_type": "contact",
                            "resource_id": contact["id"], "user_id": uuid.UUID(actor.user_id),
                            "changes": {"first_name": "Ada", "email": "ada@example.com",
                                        "tags": ["a", "b"]}}]
    [event] = found.events
    assert (event["event_type"], event["entity_id"]) == ("contact.created", contact["id"])
    assert event["payload"]["email"] == "ada@example.com"
    assert event["user_id"] == uuid.UUID(actor.user_id)


async def test_an_email_is_unique_in_the_org_whatever_its_case(db: Database, org: Org) -> None:
    actor = Actor(str(org.id))
    async with db.tenant_tx(org.id) as conn:
        await contacts.create(conn, actor, {"email": "Dup@Example.com"})
    with pytest.raises(Conflict) as caught:
        async with db.tenant_tx(org.id) as conn:
            await contacts.create(conn, actor, {"email": "dup@example.com"})
    assert caught.value.message == "a contact with this email exists"
    assert caught.value.details == {"field": "email"}
    other = await create_org(db)
    async with db.tenant_tx(other.id) as conn:  # another org may hold the same email
        await contacts.create(conn, Actor(str(other.id)), {"email": "dup@example.com"})
    assert [a["action"] for a in (await trail(db, org)).audit] == ["contact.create"]


async def test_a_company_must_be_the_orgs_own(db: Database, org: Org) -> None:
    other = await create_org(db)
    async with db.tenant_tx(other.id) as conn:
        foreign = await companies.create(conn, Actor(str(other.id)), {"name": "Theirs"})
    with pytest.raises(Invalid) as caught:
        async with db.tenant_tx(org.id) as conn:
            await contacts.create(conn, Actor(str(org.id)), {"company_id": foreign["id"]})
    assert caught.value.field == "company_id"
    assert (await trail(db, org)).audit == []


async def test_update_names_what_changed_and_refuses_unknown_columns(
        db: Database, org: Org) -> None:
    actor = Actor(str(org.id))
    async with db.tenant_tx(org.id) as conn:
        contact = await contacts.create(conn, actor, {"first_name": "Old", "role": "CTO"})
    after = await last_seq(db, org)
    async with db.tenant_tx(org.id) as conn:
        updated = await contacts.update(conn, actor, contact["id"],
                                        {"first_name": "New", "role": "CTO"})
    assert updated["first_name"] == "New"
    [event] = (await trail(db, org, after)).events
    assert event["event_type"] == "contact.updated"
    assert event["payload"] == {"id": str(contact["id"]),
                                "changes": {"first_name": ["Old", "New"]}}
    with pytest.raises(Invalid) as caught:  # names reach the statement: only columns pass
        async with db.tenant_tx(org.id) as conn:
            await contacts.update(conn, actor, contact["id"], {"id = id; --": 1})
    assert caught.value.details == {"allowed": sorted(contacts.WRITABLE)}
    other = await create_org(db)
    with pytest.raises(NotFound):
        async with db.tenant_tx(other.id) as conn:
            await contacts.update(conn, Actor(str(other.id)), contact["id"], {"role": "x"})


async def test_pages_of_a_search_in_a_callers_transaction_or_its_own(
        db: Database, org: Org) -> None:
    actor = Actor(str(org.id))
    async with db.tenant_tx(org.id) as conn:
        for i in range(5):
            await contacts.create(conn, actor, {
                "first_name": f"Grace{i}", "last_name": "Hopper" if i % 2 else "Lovelace",
                "tags": ["vip"] if i < 3 else [], "source": "fair"})
    filters = ContactFilters(q="hop gra", tags=["vip"], source="fair")
    async with db.tenant_tx(org.id) as conn:
        first = await contacts.page(conn, filters, Page(1, 1))
    assert (first.page, first.limit, first.total) == (1, 1, 1)
    assert first.data[0]["first_name"] == "Grace1"
    assert "total" not in first.data[0]
    own = await contacts.read_page(db, str(org.id), filters, Page(1, 1))
    assert own == first
    past = await contacts.read_page(db, str(org.id), ContactFilters(tags=["vip"]), Page(9, 2))
    assert (past.total, past.data) == (3, [])
    with pytest.raises(Invalid) as caught:
        await contacts.read_page(db, str(org.id), ContactFilters(q="a b c d e f"), Page(1, 5))
    assert caught.value.field == "q"


async def test_bulk_tag_touches_only_the_orgs_contacts(db: Database, org: Org) -> None:
    actor = Actor(str(org.id))
    other = await create_org(db)
    async with db.tenant_tx(other.id) as conn:
        theirs = await contacts.create(conn, Actor(str(other.id)), {"tags": ["keep"]})
    async with db.tenant_tx(org.id) as conn:
        mine = await contacts.create(conn, actor, {"tags": ["old", "x"]})
    after = await last_seq(db, org)
    with pytest.raises(Invalid):
        async with db.tenant_tx(org.id) as conn:
            await contacts.bulk_tag(conn, actor, [mine["id"]])
    async with db.tenant_tx(org.id) as conn:
        updated = await contacts.bulk_tag(conn, actor, [mine["id"], theirs["id"]],
                                          add=["new"], remove=["old"])
        assert (await contacts.get(conn, mine["id"]))["tags"] == ["new", "x"]
    assert updated == 1
    [event] = (await trail(db, org, after)).events
    assert event["payload"] == {"id": str(mine["id"]), "tags_added": ["new"],
                                "tags_removed": ["old"]}
    async with db.tenant_tx(other.id) as conn:
        assert (await contacts.get(conn, theirs["id"]))["tags"] == ["keep"]


async def test_import_commits_chunk_by_chunk_and_reports_refused_rows(
        db: Database, org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contacts, "IMPORT_CHUNK", 2)
    actor = Actor(str(org.id))
    rows = [(2, {"email": "a@example.com", "source": "import"}),
            (3, {"email": "b@example.com"}),
            (4, {"email": "A@example.com"}),  # a duplicate: refused alone
            (5, {"email": "c@example.com", "tags": ["z", "y"]}),
            (6, {"email": "d@example.com", "company_id": uuid.uuid4()})]
    report = await contacts.import_rows(db, actor, rows)
    assert report == {"imported": 3, "errors": [
        {"row": 4, "errors": ["a contact with this email exists"]},
        {"row": 6, "errors": ["company not found"]}]}
    found = await trail(db, org)
    xids = [e["xid"] for e in found.events]
    assert [xids.count(x) for x in sorted(set(xids))] == [2, 1]  # the third chunk stored none
    assert [a["action"] for a in found.audit] == ["contact.create"] * 3
    listed = await contacts.read_page(db, str(org.id), ContactFilters(), Page(1, 10))
    assert sorted(c["email"] or "" for c in listed.data) == [
        "a@example.com", "b@example.com", "c@example.com"]


async def test_delete_writes_its_audit_row_and_event(db: Database, org: Org) -> None:
    actor = Actor(str(org.id))
    async with db.tenant_tx(org.id) as conn:
        contact = await contacts.create(conn, actor, {"first_name": "Gone"})
    after = await last_seq(db, org)
    async with db.tenant_tx(org.id) as conn:
        await contacts.delete(conn, actor, contact["id"])
    found = await trail(db, org, after)
    assert found.audit[-1]["action"] == "contact.delete"
    assert [(e["event_type"], e["payload"]) for e in found.events] == [
        ("contact.deleted", {"id": str(contact["id"])})]
    with pytest.raises(NotFound):
        async with db.tenant_tx(org.id) as conn:
            await contacts.delete(conn, actor, contact["id"])
