"""storage.companies without HTTP: a company needs a name, an update that
changes nothing writes nothing, filters narrow the page, and a delete keeps
the company's contacts."""
from __future__ import annotations

import pytest

from core.errors import Invalid
from storage import companies, contacts
from storage.audit import Actor
from storage.companies import CompanyFilters
from storage.db import Database
from storage.rows import Page
from tests.conftest import Org
from tests.storage.trail import last_seq, trail


async def test_a_company_needs_a_name(db: Database, org: Org) -> None:
    actor = Actor(str(org.id))
    for fields in ({"industry": "Tea"}, {"name": None}):
        with pytest.raises(Invalid) as caught:
            async with db.tenant_tx(org.id) as conn:
                await companies.create(conn, actor, fields)
        assert caught.value.field == "name"
    async with db.tenant_tx(org.id) as conn:
        company = await companies.create(conn, actor, {"name": "Acme", "website": None})
    with pytest.raises(Invalid):
        async with db.tenant_tx(org.id) as conn:
            await companies.update(conn, actor, company["id"], {"name": None})
    assert [a["action"] for a in (await trail(db, org)).audit] == ["company.create"]
    assert (await trail(db, org)).audit[0]["changes"] == {"name": "Acme"}


async def test_an_update_that_changes_nothing_writes_nothing(db: Database, org: Org) -> None:
    actor = Actor(str(org.id))
    async with db.tenant_tx(org.id) as conn:
        company = await companies.create(conn, actor, {"name": "Acme", "stage": "lead"})
    after = await last_seq(db, org)
    async with db.tenant_tx(org.id) as conn:
        await companies.update(conn, actor, company["id"], {"stage": "lead"})
    assert (await trail(db, org, after)).events == []
    async with db.tenant_tx(org.id) as conn:
        updated = await companies.update(conn, actor, company["id"], {"stage": "customer"})
    assert updated["stage"] == "customer"
    [event] = (await trail(db, org, after)).events
    assert event["payload"] == {"id": str(company["id"]),
                                "changes": {"stage": ["lead", "customer"]}}


async def test_filters_narrow_the_page_and_a_delete_keeps_contacts(
        db: Database, org: Org) -> None:
    actor = Actor(str(org.id))
    async with db.tenant_tx(org.id) as conn:
        tea = await companies.create(conn, actor, {"name": "Tea 100%", "industry": "Drinks"})
        await companies.create(conn, actor, {"name": "Tea house", "industry": "drinks"})
        await companies.create(conn, actor, {"name": "Steel", "industry": "Metal"})
        contact = await contacts.create(conn, actor, {"company_id": tea["id"]})
        assert (await companies.page(conn, CompanyFilters(industry="DRINKS"), Page())).total == 2
        assert [c["id"] for c in (await companies.page(
            conn, CompanyFilters(q="100%"), Page())).data] == [tea["id"]]
        await companies.delete(conn, actor, tea["id"])
        assert (await contacts.get(conn, contact["id"]))["company_id"] is None
