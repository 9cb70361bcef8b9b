"""Users, organizations, memberships and refresh-token families.

Sign-in happens before any tenant is known, so these run on the system pool;
everything after sign-in runs as `bidi_app` in a tenant transaction."""
from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from core.errors import Conflict
from core.security import REFRESH_TTL, digest, opaque_token

USER_COLUMNS = "id, email, name, avatar_url, mfa_enabled, created_at"


def slugify(name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80] or "org"
    return f"{base}-{secrets.token_hex(3)}"


async def create_user_and_org(conn: asyncpg.Connection, *, email: str, password_hash: str,
                              name: str, org_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        user = await conn.fetchrow(
            f"INSERT INTO users (email, password_hash, name) VALUES ($1, $2, $3)"
            f" RETURNING {USER_COLUMNS}", email, password_hash, name)
    except asyncpg.UniqueViolationError:
        raise Conflict("an account with this email exists") from None
    org = await conn.fetchrow(
        "INSERT INTO organizations (name, slug, billing_email) VALUES ($1, $2, $3)"
        " RETURNING id, name, slug, created_at", org_name, slugify(org_name), email)
    await conn.execute(
        "INSERT INTO organization_members (organization_id, user_id, role)"
        " VALUES ($1, $2, 'owner')", org["id"], user["id"])
    await conn.execute(
        "INSERT INTO subscriptions (organization_id, plan) VALUES ($1, 'free')", org["id"])
    return dict(user), dict(org)


async def user_by_email(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {USER_COLUMNS}, password_hash, mfa_secret, mfa_last_step, mfa_recovery_codes"
        " FROM users WHERE lower(email) = lower($1)", email)


async def memberships(conn: asyncpg.Connection, user_id: Any) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT m.organization_id, m.role, o.name, o.slug FROM organization_members m"
        " JOIN organizations o ON o.id = m.organization_id WHERE m.user_id = $1"
        " ORDER BY m.created_at", user_id)


async def membership(conn: asyncpg.Connection, user_id: Any, org_id: Any) -> str | None:
    return await conn.fetchval(
        "SELECT role FROM organization_members WHERE user_id = $1 AND organization_id = $2",
        user_id, org_id)


async def issue_refresh(conn: asyncpg.Connection, user_id: Any, org_id: Any,
                        family_id: uuid.UUID | None = None) -> tuple[str, uuid.UUID]:
    token = opaque_token()
    family = family_id or uuid.uuid4()
    row_id = await conn.fetchval(
        "INSERT INTO refresh_tokens (user_id, organization_id, family_id, token_hash, expires_at)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING id", user_id, org_id, family,
        digest(token), datetime.now(UTC) + timedelta(seconds=REFRESH_TTL))
    return token, row_id


async def rotate_refresh(conn: asyncpg.Connection,
                         token: str) -> tuple[str, str, str, str] | str:
    """Use a refresh token once: return (user_id, org_id, role, new token), or the
    reason it is refused. Reuse of a used token revokes its whole family; the
    caller must commit before answering so that the revocation sticks."""
    row = await conn.fetchrow(
        "SELECT id, user_id, organization_id, family_id, used_at, revoked_at, expires_at"
        " FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE", digest(token))
    if row is None:
        return "invalid refresh token"
    if row["used_at"] is not None or row["revoked_at"] is not None:
        await revoke_family(conn, row["family_id"])
        return "refresh token reused: every session of this login is revoked"
    if row["expires_at"] < datetime.now(UTC):
        return "refresh token expired"
    role = await membership(conn, row["user_id"], row["organization_id"])
    if role is None:
        await revoke_family(conn, row["family_id"])
        return "no longer a member of this organization"
    new_token, new_id = await issue_refresh(conn, row["user_id"], row["organization_id"],
                                            row["family_id"])
    await conn.execute(
        "UPDATE refresh_tokens SET used_at = now(), replaced_by = $2 WHERE id = $1",
        row["id"], new_id)
    return str(row["user_id"]), str(row["organization_id"]), role, new_token


async def revoke_family(conn: asyncpg.Connection, family_id: Any) -> None:
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        family_id)


async def revoke_token_family(conn: asyncpg.Connection, token: str) -> None:
    family = await conn.fetchval(
        "SELECT family_id FROM refresh_tokens WHERE token_hash = $1", digest(token))
    if family is not None:
        await revoke_family(conn, family)
