"""storage.api_keys called directly: scopes within the creator's, audited
creation and revocation, another org's key out of reach."""
from __future__ import annotations

import pytest

from core.errors import Forbidden, Invalid, NotFound
from core.rbac import permissions_of
from core.security import digest
from storage import api_keys
from storage.audit import Actor
from storage.db import Database
from tests.storage.accounts import audit_rows, events, sign_up


async def test_a_key_holds_only_known_scopes_its_creator_has(db: Database) -> None:
    owner = await sign_up(db)
    async with db.tenant_tx(owner.org_id, owner.user_id) as conn:
        with pytest.raises(Invalid, match="unknown scopes: nope") as unknown:
            await api_keys.create(conn, owner.actor, name="k", scopes=["nope"],
                                  allowed=permissions_of("owner"))
        assert unknown.value.field == "scopes"
        with pytest.raises(Forbidden, match="creator lacks: members:manage"):
            await api_keys.create(conn, owner.actor, name="k",
                                  scopes=["crm:read", "members:manage"],
                                  allowed=permissions_of("bidi"))
        with pytest.raises(Forbidden, match="no creator"):
            await api_keys.create(conn, Actor(str(owner.org_id)), name="k",
                                  scopes=["crm:read"], allowed={"crm:read"})


async def test_created_keys_are_stored_hashed_and_audited(db: Database) -> None:
    owner = await sign_up(db)
    async with db.tenant_tx(owner.org_id, owner.user_id) as conn:
        made = await api_keys.create(conn, owner.actor, name="ci",
                                     scopes=["crm:write", "crm:read", "crm:read"],
                                     allowed=permissions_of("owner"))
        stored = await conn.fetchrow("SELECT created_by, key_hash FROM api_keys WHERE id = $1",
                                     made.key["id"])
        total, listed = await api_keys.page(conn, 10, 0)
    assert made.key["scopes"] == ["crm:read", "crm:write"]
    assert (stored["created_by"], stored["key_hash"]) == (owner.user_id, digest(made.secret))
    assert (total, listed) == (1, [made.key])
    [row] = await audit_rows(db, owner.org_id, made.key["id"])
    assert (row["action"], row["user_id"]) == ("api_key.create", owner.user_id)
    [event] = await events(db, owner.org_id, made.key["id"])
    assert event["event_type"] == "api_key.created"
    assert event["payload"]["prefix"] == made.key["prefix"]

    async with db.tenant_tx(owner.org_id, owner.user_id) as conn:
        await api_keys.revoke(conn, owner.actor, made.key["id"])
        _, [after] = await api_keys.page(conn, 10, 0)
    assert after["revoked_at"] is not None
    assert [e["event_type"] for e in await events(db, owner.org_id, made.key["id"])] == \
        ["api_key.created", "api_key.revoked"]


async def test_another_orgs_key_cannot_be_revoked(db: Database) -> None:
    owner, other = await sign_up(db), await sign_up(db)
    async with db.tenant_tx(owner.org_id, owner.user_id) as conn:
        made = await api_keys.create(conn, owner.actor, name="ci", scopes=["crm:read"],
                                     allowed={"crm:read"})
    async with db.tenant_tx(other.org_id, other.user_id) as conn:
        with pytest.raises(NotFound):
            await api_keys.revoke(conn, other.actor, made.key["id"])
        assert await api_keys.revoke_created_by(conn, owner.user_id) == []
