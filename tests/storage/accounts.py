"""Fresh people and organizations for storage tests, made through the
storage functions themselves (sign-up, invitation, acceptance)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from core.rbac import Role
from storage import identity, members
from storage.audit import Actor
from storage.db import Database


@dataclass(frozen=True)
class Person:
    user_id: uuid.UUID
    email: str
    org_id: uuid.UUID
    role: str

    @property
    def actor(self) -> Actor:
        return Actor(str(self.org_id), str(self.user_id))


def new_email() -> str:
    return f"s{uuid.uuid4().hex[:12]}@example.com"


async def sign_up(db: Database) -> Person:
    """A new user owning a new organization."""
    email = new_email()
    async with db.system_tx() as conn:
        signed = await identity.register(conn, email=email, password_hash="", name="Owner",
                                         org_name="Storage test")
    return Person(signed.user["id"], email, signed.org.org_id, Role.OWNER.value)


async def new_user(db: Database, email: str | None = None) -> tuple[uuid.UUID, str]:
    """A user of no organization."""
    email = email or new_email()
    async with db.system_tx() as conn:
        user_id = await conn.fetchval(
            "INSERT INTO users (email, password_hash, name) VALUES ($1, '', 'Member')"
            " RETURNING id", email)
    return user_id, email


async def join(db: Database, owner: Person, role: Role) -> Person:
    """A new user invited by `owner` and accepted into their organization."""
    user_id, email = await new_user(db)
    async with db.tenant_tx(owner.org_id, owner.user_id) as conn:
        made = await members.invite(conn, owner.actor, acting_role=owner.role, email=email,
                                    role=role)
    async with db.system_tx() as conn:
        await members.accept(conn, user_id, made.token)
    return Person(user_id, email, owner.org_id, role.value)


async def audit_rows(db: Database, org_id: Any, resource_id: Any) -> list[dict[str, Any]]:
    async with db.system_tx() as conn:
        rows = await conn.fetch(
            "SELECT action, user_id, changes FROM audit_logs WHERE organization_id = $1"
            " AND resource_id = $2 ORDER BY created_at, id", org_id, resource_id)
    return [dict(r) for r in rows]


async def events(db: Database, org_id: Any, entity_id: Any) -> list[dict[str, Any]]:
    async with db.system_tx() as conn:
        rows = await conn.fetch(
            "SELECT event_type, payload FROM events WHERE organization_id = $1"
            " AND entity_id = $2 ORDER BY seq", org_id, entity_id)
    return [dict(r) for r in rows]
