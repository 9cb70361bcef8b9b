"""storage.organizations called directly: audited updates with before and
after, deletion only when the slug is named."""
from __future__ import annotations

import pytest

from core.errors import Invalid, NotFound
from storage import organizations
from storage.db import Database
from tests.storage.accounts import audit_rows, events, sign_up


async def test_an_update_records_what_changed(db: Database) -> None:
    owner = await sign_up(db)
    async with db.tenant_tx(owner.org_id, owner.user_id) as conn:
        before = await organizations.get(conn)
        after = await organizations.update(conn, owner.actor, {
            "name": "Renamed", "settings": {"tz": "UTC"}, "billing_email": None})
        with pytest.raises(Invalid, match="cannot be null"):
            await organizations.update(conn, owner.actor, {"name": None})
        with pytest.raises(Invalid, match="cannot change slug"):
            await organizations.update(conn, owner.actor, {"slug": "mine"})
    assert before["settings"] == {}
    assert (after["name"], after["settings"], after["billing_email"]) == \
        ("Renamed", {"tz": "UTC"}, None)
    [created, updated] = await audit_rows(db, owner.org_id, owner.org_id)
    assert created["action"] == "organization.create"
    assert updated["changes"] == {"name": ["Storage test", "Renamed"],
                                  "settings": [{}, {"tz": "UTC"}],
                                  "billing_email": [owner.email, None]}
    assert [e["event_type"] for e in await events(db, owner.org_id, owner.org_id)] == \
        ["organization.created", "organization.updated"]


async def test_deletion_needs_the_slug_and_takes_everything(db: Database) -> None:
    owner = await sign_up(db)
    async with db.tenant_tx(owner.org_id, owner.user_id) as conn:
        slug = (await organizations.get(conn))["slug"]
    with pytest.raises(Invalid) as wrong:
        await organizations.delete(db, owner.actor, slug + "-not")
    assert wrong.value.field == "confirm_slug"
    await organizations.delete(db, owner.actor, slug)
    async with db.system_tx() as conn:
        assert await conn.fetchval("SELECT count(*) FROM organization_members"
                                   " WHERE organization_id = $1", owner.org_id) == 0
    with pytest.raises(NotFound):
        await organizations.delete(db, owner.actor, slug)
