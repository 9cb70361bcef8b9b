"""Users, organizations, memberships and sessions (refresh-token families).

Sign-in happens before any tenant is known, so these run on the system pool;
everything after sign-in runs as `bidi_app` in a tenant transaction. Access
tokens are not made here: a session is its refresh token, and the API signs
the access token for the membership it names."""
from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from core.crypto import Cipher
from core.errors import Conflict, Forbidden, NotFound, Unauthorized
from core.rbac import Role
from core.security import REFRESH_TTL, digest, opaque_token, verify_password
from storage import mfa
from storage.audit import Actor, record
from storage.rows import one

USER_COLUMNS = "id, email, name, avatar_url, mfa_enabled, created_at"
USER_FIELDS = tuple(USER_COLUMNS.split(", "))


@dataclass(frozen=True)
class Membership:
    org_id: uuid.UUID
    name: str
    slug: str
    role: str


@dataclass(frozen=True)
class SignedIn:
    """A new session: the user (public columns), the organization it is in,
    and its refresh token."""

    user: dict[str, Any]
    org: Membership
    refresh_token: str


@dataclass(frozen=True)
class Me:
    user: dict[str, Any]
    org: Membership
    memberships: list[Membership]


def slugify(name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80] or "org"
    return f"{base}-{secrets.token_hex(3)}"


def public(user: Any) -> dict[str, Any]:
    """A user row without its secrets."""
    return {k: user[k] for k in USER_FIELDS}


async def create_user_and_org(conn: asyncpg.Connection, *, email: str, password_hash: str,
                              name: str, org_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    # Caught here rather than registered with storage.errors: sign-in with an
    # external identity answers the same clash differently (storage.oauth).
    try:
        user = one(await conn.fetchrow(
            f"INSERT INTO users (email, password_hash, name) VALUES ($1, $2, $3)"
            f" RETURNING {USER_COLUMNS}", email, password_hash, name), "INSERT INTO users")
    except asyncpg.UniqueViolationError:
        raise Conflict("an account with this email exists") from None
    org = one(await conn.fetchrow(
        "INSERT INTO organizations (name, slug, billing_email) VALUES ($1, $2, $3)"
        " RETURNING id, name, slug, created_at", org_name, slugify(org_name), email),
        "INSERT INTO organizations")
    await conn.execute(
        "INSERT INTO organization_members (organization_id, user_id, role)"
        " VALUES ($1, $2, 'owner')", org["id"], user["id"])
    await conn.execute(
        "INSERT INTO subscriptions (organization_id, plan) VALUES ($1, 'free')", org["id"])
    return dict(user), dict(org)


async def register(conn: asyncpg.Connection, *, email: str, password_hash: str, name: str,
                   org_name: str, ip: str | None = None,
                   user_agent: str | None = None) -> SignedIn:
    """Sign up: a user, their organization (they own it), its free plan, and a
    first session; audited as `organization.create`."""
    user, org = await create_user_and_org(conn, email=email, password_hash=password_hash,
                                          name=name, org_name=org_name)
    refresh, _ = await issue_refresh(conn, user["id"], org["id"])
    await record(conn, Actor(str(org["id"]), str(user["id"]), ip, user_agent),
                 action="organization.create", resource_type="organization",
                 resource_id=org["id"], changes={"name": org["name"]},
                 event_type="organization.created",
                 payload={"organization_id": org["id"], "owner_id": user["id"]})
    return SignedIn(user, Membership(org["id"], org["name"], org["slug"], Role.OWNER.value),
                    refresh)


class MfaRequired(Unauthorized):
    """The right password of an account with a second factor on, and no code."""

    code = "mfa_required"


async def login(conn: asyncpg.Connection, *, email: str, password: str, code: str | None,
                cipher: Cipher) -> SignedIn:
    """Sign in with a password (and a second-factor code when the account has
    one on) into the user's first organization. Wrong email, password and
    code look alike; the right password without a code is `MfaRequired`, so
    a sign-in form knows to ask for one (only who knows the password learns
    that the account has a second factor)."""
    user = await user_by_email(conn, email)
    stored = user["password_hash"] if user is not None else None
    ok = await asyncio.to_thread(verify_password, stored, password)
    if ok and user is not None and user["mfa_enabled"]:
        if not code:
            raise MfaRequired("enter the code from your authenticator app")
        ok = await mfa.check(conn, user, code, cipher)
    if not ok or user is None:
        raise Unauthorized("wrong email, password or code")
    orgs = await memberships(conn, user["id"])
    if not orgs:
        raise Forbidden("this account belongs to no organization")
    refresh, _ = await issue_refresh(conn, user["id"], orgs[0].org_id)
    return SignedIn(public(user), orgs[0], refresh)


async def user_by_email(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {USER_COLUMNS}, password_hash, mfa_secret, mfa_last_step, mfa_recovery_codes"
        " FROM users WHERE lower(email) = lower($1)", email)


async def user_by_id(conn: asyncpg.Connection, user_id: Any, *,
                     factors: bool = False) -> asyncpg.Record | None:
    """A user's public columns, and with `factors` their second-factor state."""
    extra = ", mfa_secret, mfa_last_step, mfa_recovery_codes" if factors else ""
    return await conn.fetchrow(f"SELECT {USER_COLUMNS}{extra} FROM users WHERE id = $1",
                               user_id)


async def memberships(conn: asyncpg.Connection, user_id: Any) -> list[Membership]:
    """The user's organizations, the oldest membership first."""
    rows = await conn.fetch(
        "SELECT m.organization_id, m.role, o.name, o.slug FROM organization_members m"
        " JOIN organizations o ON o.id = m.organization_id WHERE m.user_id = $1"
        " ORDER BY m.created_at", user_id)
    return [Membership(r["organization_id"], r["name"], r["slug"], r["role"]) for r in rows]


def choose(orgs: Sequence[Membership], wanted: Any = None) -> Membership | None:
    """The membership of `wanted` (an org id), else the first one."""
    found = next((o for o in orgs if str(o.org_id) == str(wanted)), None)
    return found or (orgs[0] if orgs else None)


async def membership(conn: asyncpg.Connection, user_id: Any, org_id: Any) -> str | None:
    role = await conn.fetchval(
        "SELECT role FROM organization_members WHERE user_id = $1 AND organization_id = $2",
        user_id, org_id)
    return None if role is None else str(role)


async def me(conn: asyncpg.Connection, user_id: Any, org_id: Any) -> Me:
    """The signed-in user, the organization of their session and all of theirs."""
    user = await user_by_id(conn, user_id)
    orgs = await memberships(conn, user_id)
    if user is None:
        raise Unauthorized("this account no longer exists")
    current = next((o for o in orgs if str(o.org_id) == str(org_id)), None)
    if current is None:
        raise Unauthorized("no longer a member of this organization")
    return Me(dict(user), current, orgs)


async def switch_org(conn: asyncpg.Connection, user_id: Any, org_id: uuid.UUID) -> SignedIn:
    """A new session of the user in another of their organizations."""
    target = next((o for o in await memberships(conn, user_id) if o.org_id == org_id), None)
    if target is None:
        raise NotFound("organization not found")
    user = await user_by_id(conn, user_id)
    if user is None:
        raise Unauthorized("this account no longer exists")
    refresh, _ = await issue_refresh(conn, user["id"], org_id)
    return SignedIn(dict(user), target, refresh)


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


async def revoke_member_refresh(conn: asyncpg.Connection, user_id: Any, org_id: Any) -> None:
    """Every refresh token of the user in the org stops working (a tenant or a
    system transaction)."""
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1"
        " AND organization_id = $2 AND revoked_at IS NULL", user_id, org_id)


async def logout(conn: asyncpg.Connection, user_id: Any, org_id: Any,
                 refresh_token: str | None = None) -> None:
    """End the session of `refresh_token` (its whole family), or without one
    every session of the user in the org."""
    if refresh_token:
        await revoke_token_family(conn, refresh_token)
    else:
        await revoke_member_refresh(conn, user_id, org_id)
