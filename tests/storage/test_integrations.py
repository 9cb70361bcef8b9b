"""storage.integrations called directly: secrets sealed and never shown,
audited changes, rotation."""
from __future__ import annotations

import pytest

from core.crypto import Cipher
from core.errors import Invalid, NotFound
from storage import integrations
from storage.db import Database
from tests.storage.accounts import audit_rows, events, sign_up

CIPHER = Cipher("storage tests")


async def test_secrets_are_sealed_and_rotated(db: Database) -> None:
    owner = await sign_up(db)
    async with db.tenant_tx(owner.org_id, owner.user_id) as conn:
        made = await integrations.create(conn, owner.actor, CIPHER, type="api", name="inbox",
                                         config={"callback_url": "https://example.com/r"},
                                         secrets={"secret": "whsec_one"})
        raw = await conn.fetchval("SELECT config FROM integrations WHERE id = $1", made["id"])
        engine = await integrations.find(conn, str(made["id"]), CIPHER)
    assert made["config"] == {"callback_url": "https://example.com/r"}
    assert "whsec_one" not in str(raw) and set(raw["secrets"]) == {"secret"}
    assert engine is not None and engine.secrets == {"secret": "whsec_one"}
    async with db.tenant_tx(owner.org_id, owner.user_id) as conn:
        rotated = await integrations.rotate_secret(conn, owner.actor, CIPHER, made["id"],
                                                   "whsec_two")
        engine = await integrations.find(conn, str(made["id"]), CIPHER)
        total, listed = await integrations.page(conn, 10, 0)
    assert engine is not None and engine.secrets == {"secret": "whsec_two"}
    assert rotated["config"] == made["config"]
    assert (total, [i["id"] for i in listed]) == (1, [made["id"]])
    assert [r["action"] for r in await audit_rows(db, owner.org_id, made["id"])] == \
        ["integration.create", "integration.rotate_secret"]


async def test_updates_and_deletion(db: Database) -> None:
    owner, other = await sign_up(db), await sign_up(db)
    async with db.tenant_tx(owner.org_id, owner.user_id) as conn:
        made = await integrations.create(conn, owner.actor, CIPHER, type="api", name="inbox",
                                         config={}, secrets={"secret": "whsec_one"})
        changed = await integrations.update(conn, owner.actor, made["id"], {
            "name": None, "is_active": False, "callback_url": "https://example.com/r"})
        with pytest.raises(Invalid, match="cannot change type"):
            await integrations.update(conn, owner.actor, made["id"], {"type": "telegram"})
    assert (changed["name"], changed["is_active"], changed["config"]) == \
        ("inbox", False, {"callback_url": "https://example.com/r"})
    async with db.tenant_tx(other.org_id, other.user_id) as conn:
        with pytest.raises(NotFound):
            await integrations.get(conn, made["id"])
        with pytest.raises(NotFound):
            await integrations.delete(conn, other.actor, made["id"])
    async with db.tenant_tx(owner.org_id, owner.user_id) as conn:
        await integrations.delete(conn, owner.actor, made["id"])
        with pytest.raises(NotFound):
            await integrations.get(conn, made["id"])
    assert [e["event_type"] for e in await events(db, owner.org_id, made["id"])] == \
        ["integration.created", "integration.updated", "integration.deleted"]
