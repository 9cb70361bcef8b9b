"""External identities (`oauth_connections`): sign in, link to a signed-in
user, or create an account and its organization on first sign-in. An identity
is never linked to an account by email: a provider's word that it owns an
address is not ours. Provider tokens are stored encrypted."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from core.crypto import Cipher
from core.errors import Conflict, Unauthorized
from storage import identity
from storage.rows import one


@dataclass(frozen=True)
class ExternalIdentity:
    provider: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: datetime | None = None


class AccountExists(Conflict):
    """An existing account has the identity's email: linking by email alone
    would hand that account to whoever controls the identity."""

    code = "account_exists"


async def sign_in(conn: asyncpg.Connection, who: ExternalIdentity, cipher: Cipher, *,
                  link_to: UUID | None = None,
                  ) -> tuple[dict[str, Any], list[identity.Membership], bool]:
    """Return (user, memberships, created). An identity seen before signs in
    its user; a new one creates an account, unless an account already has its
    email (AccountExists: the owner signs in there and links it). `link_to`
    links the identity to that signed-in user instead."""
    linked = await conn.fetchval(
        "SELECT user_id FROM oauth_connections WHERE provider = $1 AND provider_user_id = $2",
        who.provider, who.subject)
    created = False
    if link_to is not None:
        if not await conn.fetchval("SELECT 1 FROM users WHERE id = $1", link_to):
            raise Unauthorized("this account no longer exists")
        if linked is not None and linked != link_to:
            raise Conflict(f"this {who.provider} account is linked to another user")
        user_id = link_to
    elif linked is not None:
        user_id = linked
    else:
        user_id, created = await _create(conn, who), True
    encrypt = cipher.encrypt
    owner = await conn.fetchval(
        "INSERT INTO oauth_connections (user_id, provider, provider_user_id, access_token,"
        " refresh_token, expires_at) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (provider, provider_user_id) DO UPDATE SET access_token = $4,"
        " refresh_token = coalesce($5, oauth_connections.refresh_token), expires_at = $6"
        " WHERE oauth_connections.user_id = $1 RETURNING user_id",
        user_id, who.provider, who.subject,
        encrypt(who.access_token) if who.access_token else None,
        encrypt(who.refresh_token) if who.refresh_token else None, who.expires_at)
    if owner is None:  # linked to someone else since the first look
        raise Conflict(f"this {who.provider} account is linked to another user")
    # the connection just written holds the user's row (its foreign key)
    user = one(await identity.user_by_id(conn, user_id), "SELECT FROM users")
    return dict(user), await identity.memberships(conn, user_id), created


async def _create(conn: asyncpg.Connection, who: ExternalIdentity) -> UUID:
    if who.email and who.email_verified:
        if await conn.fetchval("SELECT 1 FROM users WHERE lower(email) = lower($1)", who.email):
            raise AccountExists(
                f"an account with {who.email} exists: sign in to it, then link your"
                f" {who.provider.title()} account from there", details={"email": who.email})
        email = who.email
    else:
        email = f"{who.provider}-{who.subject}@users.invalid"
    name = who.name or email.split("@")[0]
    try:
        user, _ = await identity.create_user_and_org(
            conn, email=email, password_hash="", name=name, org_name=f"{name}'s workspace")
    except Conflict:  # the same email signed up in between
        raise AccountExists(f"an account with {email} exists", details={"email": email}) from None
    return user["id"]  # type: ignore[no-any-return]
