"""Members of an organization: listed, invited by an emailed token, joined,
given another role, removed. Only an owner grants or takes away ownership
(`acting_role`: the role of whoever asks), and the last owner can be neither
demoted nor removed.

Tokens name a member's role, and access tokens are checked without a
database read, so a role change or a removal ends the member's sessions: in
the same transaction their refresh tokens (and on removal their API keys)
are revoked, and after COMMIT the change is announced in Redis
(storage.revocations) so that every API replica refuses their access tokens
and closes their WebSockets. That is why these two open their own
transaction from a `Database`: nothing is announced that did not commit,
and nothing committed goes unannounced."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypedDict, cast
from uuid import UUID

import asyncpg
import redis.asyncio as aioredis

from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.rbac import Role
from core.security import digest, opaque_token
from storage import api_keys, chats, identity
from storage.audit import Actor, record
from storage.db import Database
from storage.errors import expect
from storage.revocations import revoke_sessions
from storage.rows import one

INVITE_TTL = timedelta(days=7)
MEMBER_SQL = ("SELECT m.user_id, u.email, u.name, m.role, m.created_at AS joined_at"
              " FROM organization_members m JOIN users u ON u.id = m.user_id")
INVITATION_COLUMNS = "id, email, role, expires_at, accepted_at, created_at"

expect("organization_members_organization_id_user_id_key",
       lambda: Conflict("already a member"))


class Member(TypedDict):
    user_id: UUID
    email: str
    name: str | None
    role: str
    joined_at: datetime | None


class Invitation(TypedDict):
    id: UUID
    email: str
    role: str
    expires_at: datetime
    accepted_at: datetime | None
    created_at: datetime | None


@dataclass(frozen=True)
class NewInvitation:
    invitation: Invitation
    token: str  # for the invitee; shown this once


@dataclass(frozen=True)
class Joined:
    org_id: UUID
    role: str


@dataclass(frozen=True)
class RoleChange:
    member: Member
    previous: str


@dataclass(frozen=True)
class Removal:
    role: str
    api_keys_revoked: list[UUID]


def guard_ownership(acting_role: str, *roles: str) -> None:
    """Forbidden unless an owner asks, when ownership is granted or taken away."""
    if Role.OWNER in roles and acting_role != Role.OWNER:
        raise Forbidden("only an owner can grant or take away ownership")


async def page(conn: asyncpg.Connection, limit: int, offset: int) -> tuple[int, list[Member]]:
    """The total and one page of members, the longest-standing first."""
    total = await conn.fetchval("SELECT count(*) FROM organization_members")
    rows = await conn.fetch(f"{MEMBER_SQL} ORDER BY m.created_at, m.user_id"
                            " LIMIT $1 OFFSET $2", limit, offset)
    return int(total), [_member(r) for r in rows]


async def invite(conn: asyncpg.Connection, actor: Actor, *, acting_role: str, email: str,
                 role: Role) -> NewInvitation:
    guard_ownership(acting_role, role)
    if await conn.fetchval(
            "SELECT 1 FROM organization_members m JOIN users u ON u.id = m.user_id"
            " WHERE lower(u.email) = lower($1)", email):
        raise Conflict("already a member")
    token = opaque_token()
    row = one(await conn.fetchrow(
        "INSERT INTO invitations (organization_id, email, role, token_hash, invited_by,"
        f" expires_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {INVITATION_COLUMNS}",
        UUID(actor.org_id), email, role.value, digest(token),
        actor.user_id and UUID(actor.user_id), datetime.now(UTC) + INVITE_TTL),
        "INSERT INTO invitations")
    await record(conn, actor, action="member.invite", resource_type="invitation",
                 resource_id=row["id"], changes={"email": email, "role": role},
                 event_type="member.invited",
                 payload={"invitation_id": row["id"], "email": email, "role": role.value})
    return NewInvitation(_invitation(row), token)


async def pending_invitations(conn: asyncpg.Connection) -> list[Invitation]:
    rows = await conn.fetch(
        f"SELECT {INVITATION_COLUMNS} FROM invitations"
        " WHERE accepted_at IS NULL AND expires_at > now() ORDER BY created_at")
    return [_invitation(r) for r in rows]


async def accept(conn: asyncpg.Connection, user_id: UUID, token: str, *,
                 ip: str | None = None, user_agent: str | None = None) -> Joined:
    """Join the organization of an invitation sent to the user's email (a
    system transaction: the org is not known before the token is read)."""
    invitation = await conn.fetchrow(
        "SELECT id, organization_id, email, role, expires_at, accepted_at FROM invitations"
        " WHERE token_hash = $1 FOR UPDATE", digest(token))
    if invitation is None or invitation["accepted_at"] is not None:
        raise NotFound("invitation not found or already used")
    if invitation["expires_at"] < datetime.now(UTC):
        raise Invalid("invitation expired", field="token")
    email = await conn.fetchval("SELECT email FROM users WHERE id = $1", user_id)
    if email is None or email.lower() != invitation["email"].lower():
        raise Forbidden("this invitation was sent to another email address")
    org_id, role = invitation["organization_id"], invitation["role"]
    await conn.execute("INSERT INTO organization_members (organization_id, user_id, role)"
                       " VALUES ($1, $2, $3)", org_id, user_id, role)
    await conn.execute("UPDATE invitations SET accepted_at = now() WHERE id = $1",
                       invitation["id"])
    await record(conn, Actor(str(org_id), str(user_id), ip, user_agent),
                 action="member.join", resource_type="user", resource_id=user_id,
                 changes={"role": role}, event_type="member.joined",
                 payload={"user_id": user_id, "role": role})
    return Joined(org_id, role)


async def _locked_role(conn: asyncpg.Connection, user_id: UUID) -> str:
    role = await conn.fetchval(
        "SELECT role FROM organization_members WHERE user_id = $1 FOR UPDATE", user_id)
    if role is None:
        raise NotFound("member not found")
    return str(role)


async def _other_owners(conn: asyncpg.Connection, user_id: UUID) -> int:
    # Every owner row is locked: two owners demoting each other at once
    # cannot both see the other one left.
    owners = await conn.fetch(
        "SELECT user_id FROM organization_members WHERE role = 'owner' FOR UPDATE")
    return sum(1 for r in owners if r["user_id"] != user_id)


async def change_role(db: Database, redis: aioredis.Redis, actor: Actor, user_id: UUID,
                      role: Role, *, acting_role: str) -> RoleChange:
    """Give a member another role. Their sessions end (the member refreshes
    into the new role); their API keys are cut down to it where they are used."""
    async with db.tenant_tx(actor.org_id, actor.user_id) as conn:
        current = await _locked_role(conn, user_id)
        guard_ownership(acting_role, current, role)
        if current == Role.OWNER and role != Role.OWNER \
                and await _other_owners(conn, user_id) == 0:
            raise Conflict("the last owner cannot be demoted")
        await conn.execute("UPDATE organization_members SET role = $2 WHERE user_id = $1",
                           user_id, role.value)
        row = one(await conn.fetchrow(f"{MEMBER_SQL} WHERE m.user_id = $1", user_id),
                  "SELECT FROM organization_members")  # locked by _locked_role
        await record(conn, actor, action="member.role", resource_type="user",
                     resource_id=user_id, changes={"role": [current, role.value]},
                     event_type="member.role.changed",
                     payload={"user_id": user_id, "from": current, "to": role.value})
    if current != role.value:
        await revoke_sessions(redis, actor.org_id, str(user_id), f"role changed to {role.value}")
    return RoleChange(_member(row), current)


async def remove(db: Database, redis: aioredis.Redis, actor: Actor, user_id: UUID, *,
                 acting_role: str, leaving: bool = False) -> Removal:
    """Remove a member, or with `leaving` let a member leave (no ownership
    guard: anyone may go, but the last owner stays). Their sessions in this
    org end and the API keys they made are revoked."""
    async with db.tenant_tx(actor.org_id, actor.user_id) as conn:
        current = await _locked_role(conn, user_id)
        if not leaving:
            guard_ownership(acting_role, current)
        if current == Role.OWNER and await _other_owners(conn, user_id) == 0:
            raise Conflict("the last owner cannot be removed")
        await conn.execute("DELETE FROM organization_members WHERE user_id = $1", user_id)
        keys = await api_keys.revoke_created_by(conn, user_id)
        unassigned = await chats.unassign_user(conn, user_id)
        await identity.revoke_member_refresh(conn, user_id, UUID(actor.org_id))
        await record(conn, actor, action="member.remove", resource_type="user",
                     resource_id=user_id,
                     changes={"role": current, "api_keys_revoked": keys,
                              "chats_unassigned": unassigned},
                     event_type="member.removed", payload={"user_id": user_id})
    await revoke_sessions(redis, actor.org_id, str(user_id), "removed from the organization")
    return Removal(current, keys)


def _member(row: asyncpg.Record) -> Member:
    return cast(Member, dict(row))


def _invitation(row: asyncpg.Record) -> Invitation:
    return cast(Invitation, dict(row))
