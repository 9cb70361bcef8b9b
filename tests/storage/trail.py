"""What a storage call left behind: its audit rows and its events, read
back as the org sees them."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from storage.audit import Actor
from storage.db import Database
from tests.conftest import Org


@dataclass(frozen=True)
class Trail:
    audit: list[dict[str, Any]]  # action, resource_type, resource_id, changes, user_id
    events: list[dict[str, Any]]  # event_type, entity_id, user_id, payload, xid


async def trail(db: Database, org: Org, after: int = 0) -> Trail:
    """Every audit row and event of `org` (events after seq `after`), oldest first."""
    async with db.tenant_tx(org.id) as conn:
        audit = await conn.fetch(
            "SELECT action, resource_type, resource_id, changes, user_id FROM audit_logs"
            " ORDER BY created_at, id")
        events = await conn.fetch(
            "SELECT event_type, entity_id, user_id, payload, xid::text::bigint AS xid"
            " FROM events WHERE seq > $1 ORDER BY seq", after)
    return Trail([dict(r) for r in audit], [dict(r) for r in events])


async def last_seq(db: Database, org: Org) -> int:
    async with db.tenant_tx(org.id) as conn:
        return int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM events"))


async def member(db: Database, org: Org) -> Actor:
    """An actor who is a user of `org` (audit rows and events reference users)."""
    async with db.system_tx() as conn:
        user_id = await conn.fetchval(
            "INSERT INTO users (email, name) VALUES ($1, 'Storage Test') RETURNING id",
            f"s{uuid.uuid4().hex[:12]}@example.com")
        await conn.execute("INSERT INTO organization_members (organization_id, user_id, role)"
                           " VALUES ($1, $2, 'member')", org.id, user_id)
    return Actor(str(org.id), str(user_id), "127.0.0.1", "storage-tests")
