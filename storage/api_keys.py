"""API keys of an organization: made (the secret is returned once and stored
as SHA-256 with a lookup prefix), listed, revoked. A key belongs to the user
who made it: it holds no scope they lack, and it dies with their membership
(`revoke_created_by`). The header form of a key (`bidi_<prefix>_<secret>`)
is the API's to write and read (serve.auth)."""
from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict, cast
from uuid import UUID

import asyncpg

from core.errors import Forbidden, Invalid, NotFound, Unauthorized
from core.rbac import ALL_PERMISSIONS, permissions_of
from core.security import digest, opaque_token, same
from storage.audit import Actor, record
from storage.rows import one

COLUMNS = "id, name, prefix, scopes, created_at, last_used_at, expires_at, revoked_at"


class ApiKey(TypedDict):
    id: UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret: str  # shown this once


def _checked_scopes(scopes: Collection[str], allowed: Collection[str]) -> list[str]:
    unknown = sorted(set(scopes) - ALL_PERMISSIONS)
    if unknown:
        raise Invalid(f"unknown scopes: {', '.join(unknown)}", field="scopes")
    beyond = sorted(set(scopes) - set(allowed))
    if beyond:
        raise Forbidden(f"a key cannot have scopes its creator lacks: {', '.join(beyond)}")
    return sorted(set(scopes))


async def create(conn: asyncpg.Connection, actor: Actor, *, name: str, scopes: Collection[str],
                 allowed: Collection[str], expires_at: datetime | None = None) -> NewKey:
    """A key of `actor.user_id` with `scopes`, each of which must be among the
    caller's own permissions (`allowed`)."""
    granted = _checked_scopes(scopes, allowed)
    # A key made with a key belongs to the same person (the actor is its
    # creator): it lives only as long as their membership and never holds
    # more than their role.
    if actor.user_id is None:
        raise Forbidden("this key has no creator to make keys for")
    prefix, secret = secrets.token_hex(6), opaque_token(32)
    row = one(await conn.fetchrow(
        f"INSERT INTO api_keys (organization_id, created_by, name, prefix, key_hash, scopes,"
        f" expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}",
        UUID(actor.org_id), UUID(actor.user_id), name, prefix, digest(secret), granted,
        expires_at), "INSERT INTO api_keys")
    await record(conn, actor, action="api_key.create", resource_type="api_key",
                 resource_id=row["id"], changes={"name": name, "scopes": list(scopes)},
                 event_type="api_key.created",
                 payload={"id": row["id"], "name": name, "prefix": prefix})
    return NewKey(_key(row), secret)


async def page(conn: asyncpg.Connection, limit: int, offset: int) -> tuple[int, list[ApiKey]]:
    """The total and one page of the org's keys, newest first."""
    total = await conn.fetchval("SELECT count(*) FROM api_keys")
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM api_keys ORDER BY created_at DESC, id"
                            " LIMIT $1 OFFSET $2", limit, offset)
    return int(total), [_key(r) for r in rows]


async def revoke(conn: asyncpg.Connection, actor: Actor, key_id: UUID) -> None:
    """The key stops working (revoking it again changes nothing but the audit trail)."""
    revoked = await conn.fetchval(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1"
        " RETURNING id", key_id)
    if revoked is None:
        raise NotFound("API key not found")
    await record(conn, actor, action="api_key.revoke", resource_type="api_key",
                 resource_id=key_id, changes=None, event_type="api_key.revoked",
                 payload={"id": key_id})


async def revoke_created_by(conn: asyncpg.Connection, user_id: UUID) -> list[UUID]:
    """Revoke every live key the user made in this org; return their ids."""
    rows = await conn.fetch(
        "UPDATE api_keys SET revoked_at = now() WHERE created_by = $1"
        " AND revoked_at IS NULL RETURNING id", user_id)
    return [r["id"] for r in rows]


def _key(row: asyncpg.Record) -> ApiKey:
    return cast(ApiKey, dict(row))


@dataclass(frozen=True)
class KeyGrant:
    """What a presented key may do: its org, and its scopes cut down to its
    creator's current role."""

    org_id: str
    key_id: str
    created_by: str
    scopes: frozenset[str]


async def authenticate(conn: asyncpg.Connection, prefix: str, secret: str) -> KeyGrant:
    """The grant of the key `prefix` + `secret` (owner role: before any tenant
    is known), or Unauthorized. The creator's membership is read with the
    key: a key never holds more than its creator's current role, nor outlives
    their membership."""
    row = await conn.fetchrow(
        "SELECT k.id, k.organization_id, k.created_by, k.key_hash, k.scopes, k.revoked_at,"
        " k.expires_at, m.role AS creator_role FROM api_keys k"
        " LEFT JOIN organization_members m ON m.organization_id = k.organization_id"
        " AND m.user_id = k.created_by WHERE k.prefix = $1", prefix)
    if row is None or not same(row["key_hash"], digest(secret)):
        raise Unauthorized("invalid API key")
    if row["revoked_at"] is not None:
        raise Unauthorized("API key revoked")
    if row["expires_at"] is not None and row["expires_at"] < datetime.now(UTC):
        raise Unauthorized("API key expired")
    if row["creator_role"] is None:
        raise Unauthorized("API key revoked: its creator is no longer a member")
    await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1", row["id"])
    scopes = frozenset(row["scopes"]) & permissions_of(row["creator_role"])
    return KeyGrant(str(row["organization_id"]), str(row["id"]), str(row["created_by"]), scopes)
