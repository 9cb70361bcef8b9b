"""External identities (`oauth_connections`): sign in, link, or create an
account and its organization on first sign-in. Provider tokens are stored
encrypted."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from core.crypto import Cipher
from storage import identity


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


async def sign_in(conn: asyncpg.Connection, who: ExternalIdentity,
                  cipher: Cipher) -> tuple[dict[str, Any], asyncpg.Record, bool]:
    """Return (user, first membership, created). Links by verified email when
    the identity is new but the person already has an account."""
    created = False
    user_id = await conn.fetchval(
        "SELECT user_id FROM oauth_connections WHERE provider = $1 AND provider_user_id = $2",
        who.provider, who.subject)
    if user_id is None and who.email and who.email_verified:
        user_id = await conn.fetchval("SELECT id FROM users WHERE lower(email) = lower($1)",
                                      who.email)
    if user_id is None:
        email = who.email if who.email and who.email_verified \
            else f"{who.provider}-{who.subject}@users.invalid"
        name = who.name or email.split("@")[0]
        user, _ = await identity.create_user_and_org(
            conn, email=email, password_hash="", name=name, org_name=f"{name}'s workspace")
        user_id, created = user["id"], True
    encrypt = cipher.encrypt
    await conn.execute(
        "INSERT INTO oauth_connections (user_id, provider, provider_user_id, access_token,"
        " refresh_token, expires_at) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (provider, provider_user_id) DO UPDATE SET access_token = $4,"
        " refresh_token = coalesce($5, oauth_connections.refresh_token), expires_at = $6",
        user_id, who.provider, who.subject,
        encrypt(who.access_token) if who.access_token else None,
        encrypt(who.refresh_token) if who.refresh_token else None, who.expires_at)
    user = await conn.fetchrow(f"SELECT {identity.USER_COLUMNS} FROM users WHERE id = $1",
                               user_id)
    orgs = await identity.memberships(conn, user_id)
    return dict(user), orgs[0] if orgs else None, created
