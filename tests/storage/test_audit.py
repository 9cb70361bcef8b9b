"""The audit trail read back through storage.audit.entries."""
from __future__ import annotations

from storage import api_keys, audit
from storage.db import Database
from tests.storage.accounts import sign_up


async def test_entries_filter_and_page_newest_first(db: Database) -> None:
    owner, other = await sign_up(db), await sign_up(db)
    made = []
    for i in range(3):  # one transaction each: now() orders them
        async with db.tenant_tx(owner.org_id, owner.user_id) as conn:
            made.append(await api_keys.create(conn, owner.actor, name=f"k{i}",
                                              scopes=["crm:read"], allowed={"crm:read"}))
    async with db.tenant_tx(owner.org_id, owner.user_id) as conn:
        total, rows = await audit.entries(conn, 2, 0, action="api_key.create")
        _, rest = await audit.entries(conn, 2, 2, action="api_key.create")
        one_total, one = await audit.entries(conn, 10, 0, resource_type="api_key",
                                             resource_id=made[1].key["id"],
                                             user_id=owner.user_id)
        everything, _ = await audit.entries(conn, 10, 0)
    assert total == 3
    assert [r["resource_id"] for r in rows + rest] == [m.key["id"] for m in reversed(made)]
    assert (one_total, [r["changes"]["name"] for r in one]) == (1, ["k1"])
    assert everything == 4  # and the sign-up
    async with db.tenant_tx(other.org_id, other.user_id) as conn:
        assert (await audit.entries(conn, 10, 0, action="api_key.create"))[0] == 0
