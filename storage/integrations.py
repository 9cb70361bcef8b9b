"""Channel integrations: as the engine uses them (`Integration`: public
config plus the secrets stored encrypted under `config.secrets`, decrypted
only here), and as the API shows and changes them (never their secrets),
each change with its audit row and event."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict, cast
from uuid import UUID

import asyncpg

from core.crypto import Cipher
from core.errors import Conflict, Invalid, NotFound
from storage.audit import Actor, record
from storage.errors import expect
from storage.rows import one

expect("uq_integrations_telegram_bot", lambda: Conflict(
    "this bot is connected already; disconnect it there first (a bot delivers its updates"
    " to one integration)"))
expect("uq_integrations_email_mailbox", lambda: Conflict(
    "this mailbox folder is connected already; disconnect it there first (two integrations"
    " would import every message twice)"))
expect("uq_integrations_whatsapp_number", lambda: Conflict(
    "this WhatsApp number is connected already; disconnect it there first (Meta delivers"
    " a number's messages to one integration)"))

COLUMNS = "id, organization_id, type, name, config, is_active, error"


@dataclass(frozen=True)
class Integration:
    id: str
    org_id: str
    type: str
    name: str | None
    config: Mapping[str, Any]
    secrets: Mapping[str, str] = field(repr=False, default_factory=dict)
    is_active: bool = True
    error: str | None = None  # why it stopped working on its own


def seal(cipher: Cipher, config: dict[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """The `config` column: public settings and the encrypted secrets."""
    return {**config, "secrets": {k: cipher.encrypt(v) for k, v in secrets.items()}}


def from_row(row: asyncpg.Record, cipher: Cipher) -> Integration:
    config = dict(row["config"] or {})
    sealed = config.pop("secrets", None) or {}
    return Integration(id=str(row["id"]), org_id=str(row["organization_id"]), type=row["type"],
                       name=row["name"], config=config,
                       secrets={k: cipher.decrypt(v) for k, v in sealed.items()},
                       is_active=bool(row["is_active"]), error=row.get("error"))


async def find(conn: asyncpg.Connection, integration_id: str,
               cipher: Cipher) -> Integration | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM integrations WHERE id = $1::uuid",
                              integration_id)
    return None if row is None else from_row(row, cipher)


# The API's view of an integration: never its secrets, sealed or not, nor
# the hashes it is looked up by (`lookup`).
PUBLIC_COLUMNS = ("id, type, name, config - 'secrets' - 'lookup' AS config, is_active,"
                  " last_sync_at,"
                  " error, error_at, created_at, updated_at")
# What a change may set inside `config` (default_agent_id: the agent new
# chats of the integration get; allowed_origins: a web chat's sites).
CONFIG_FIELDS = ("callback_url", "mode", "default_agent_id", "allowed_origins")


class PublicIntegration(TypedDict):
    id: UUID
    type: str
    name: str | None
    config: dict[str, Any]
    is_active: bool
    last_sync_at: datetime | None
    error: str | None
    error_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None


def _public(row: asyncpg.Record) -> PublicIntegration:
    return cast(PublicIntegration, dict(row))


async def create(conn: asyncpg.Connection, actor: Actor, cipher: Cipher, *, type: str,
                 name: str, config: dict[str, Any],
                 secrets: Mapping[str, str]) -> PublicIntegration:
    """A new integration with its public `config` (already checked by the
    caller: callback URLs against channels.netguard) and its `secrets`
    (stored sealed)."""
    row = one(await conn.fetchrow(
        f"INSERT INTO integrations (organization_id, type, name, config) VALUES"
        f" ($1, $2, $3, $4) RETURNING {PUBLIC_COLUMNS}", UUID(actor.org_id), type, name,
        seal(cipher, config, secrets)), "INSERT INTO integrations")
    await record(conn, actor, action="integration.create", resource_type="integration",
                 resource_id=row["id"], changes={"type": type, "name": name, **config},
                 event_type="integration.created",
                 payload={"id": row["id"], "type": type, "name": name})
    return _public(row)


async def page(conn: asyncpg.Connection, limit: int,
               offset: int) -> tuple[int, list[PublicIntegration]]:
    """The total and one page of the org's integrations, newest first."""
    total = await conn.fetchval("SELECT count(*) FROM integrations")
    rows = await conn.fetch(f"SELECT {PUBLIC_COLUMNS} FROM integrations"
                            " ORDER BY created_at DESC, id LIMIT $1 OFFSET $2", limit, offset)
    return int(total), [_public(r) for r in rows]


async def get(conn: asyncpg.Connection, integration_id: UUID) -> PublicIntegration:
    row = await conn.fetchrow(f"SELECT {PUBLIC_COLUMNS} FROM integrations WHERE id = $1",
                              integration_id)
    if row is None:
        raise NotFound("integration not found")
    return _public(row)


async def update(conn: asyncpg.Connection, actor: Actor, integration_id: UUID,
                 changes: Mapping[str, Any]) -> PublicIntegration:
    """Apply `changes` (`name`, `is_active`, and the `CONFIG_FIELDS`; a None
    name or flag leaves it as it is). Switching it on or off, or changing its
    mode, clears the error it stopped on: it is tried afresh."""
    unknown = sorted(set(changes) - {"name", "is_active", *CONFIG_FIELDS})
    if unknown:
        raise Invalid(f"cannot change {', '.join(unknown)}", field=unknown[0])
    config_patch = {k: changes[k] for k in CONFIG_FIELDS if k in changes}
    row = await conn.fetchrow(
        f"UPDATE integrations SET name = coalesce($2, name),"
        f" is_active = coalesce($3, is_active), config = config || $4::jsonb,"
        f" error = CASE WHEN $3 IS NULL AND NOT $4::jsonb ? 'mode' THEN error END,"
        f" error_at = CASE WHEN $3 IS NULL AND NOT $4::jsonb ? 'mode' THEN error_at END,"
        f" updated_at = now() WHERE id = $1 RETURNING {PUBLIC_COLUMNS}",
        integration_id, changes.get("name"), changes.get("is_active"), config_patch)
    if row is None:
        raise NotFound("integration not found")
    await record(conn, actor, action="integration.update", resource_type="integration",
                 resource_id=integration_id, changes=dict(changes),
                 event_type="integration.updated", payload={"id": integration_id, **changes})
    return _public(row)


async def rotate_secret(conn: asyncpg.Connection, actor: Actor, cipher: Cipher,
                        integration_id: UUID, secret: str) -> PublicIntegration:
    """Replace the signing secret: the old one stops working at COMMIT."""
    return await reseal(conn, actor, cipher, integration_id, {"secret": secret},
                        action="integration.rotate_secret")


async def reseal(conn: asyncpg.Connection, actor: Actor, cipher: Cipher, integration_id: UUID,
                 secrets: Mapping[str, str], *, action: str = "integration.update",
                 clear_error: bool = False) -> PublicIntegration:
    """Replace these of the integration's secrets (the others stay), sealed;
    with `clear_error`, the error it stopped on too (it is tried afresh).
    The audit row names the secrets changed, never their values."""
    row = await conn.fetchrow(
        f"UPDATE integrations SET config = jsonb_set(config, '{{secrets}}',"
        f" coalesce(config->'secrets', '{{}}'::jsonb) || $2::jsonb),"
        f" error = CASE WHEN $3 THEN NULL ELSE error END,"
        f" error_at = CASE WHEN $3 THEN NULL ELSE error_at END,"
        f" updated_at = now() WHERE id = $1 RETURNING {PUBLIC_COLUMNS}", integration_id,
        {k: cipher.encrypt(v) for k, v in secrets.items()}, clear_error)
    if row is None:
        raise NotFound("integration not found")
    await record(conn, actor, action=action, resource_type="integration",
                 resource_id=integration_id,
                 changes={"secrets": sorted(secrets)} if action != "integration.rotate_secret"
                 else None, event_type="integration.updated", payload={"id": integration_id})
    return _public(row)


async def delete(conn: asyncpg.Connection, actor: Actor, integration_id: UUID) -> None:
    deleted = await conn.fetchval("DELETE FROM integrations WHERE id = $1 RETURNING id",
                                  integration_id)
    if deleted is None:
        raise NotFound("integration not found")
    await record(conn, actor, action="integration.delete", resource_type="integration",
                 resource_id=integration_id, changes=None, event_type="integration.deleted",
                 payload={"id": integration_id})


async def synced(conn: asyncpg.Connection, integration_id: str) -> None:
    """The provider was read up to now (`last_sync_at`). Best effort: skipped
    while a change of the integration holds its row (a poller never waits on one)."""
    await conn.execute(
        "UPDATE integrations SET last_sync_at = now() WHERE id = (SELECT id FROM integrations"
        " WHERE id = $1::uuid FOR UPDATE SKIP LOCKED)", integration_id)


async def failed(conn: asyncpg.Connection, actor: Actor, integration_id: str,
                 error: str) -> None:
    """The integration stopped working on its own: `error` says why (shown on
    it until it is switched off and on, or its mode changes)."""
    updated = await conn.fetchval(
        "UPDATE integrations SET error = $2, error_at = now(), updated_at = now()"
        " WHERE id = $1::uuid RETURNING id", integration_id, error)
    if updated is None:
        return  # deleted meanwhile: nobody to tell
    await record(conn, actor, action="integration.fail", resource_type="integration",
                 resource_id=updated, changes={"error": error},
                 event_type="integration.updated", payload={"id": updated, "error": error})


# Telegram bots in polling mode stop on an error (a refused token) until
# changed; a mailbox keeps retrying (a password changed back works again).
POLLING = ("SELECT organization_id, id, type FROM integrations WHERE is_active AND"
           " ((type = 'telegram' AND error IS NULL AND config->>'mode' = 'polling')"
           " OR type = 'email') ORDER BY id")


async def polling(conn: asyncpg.Connection) -> list[tuple[str, str, str]]:
    """(org id, integration id, type) of every integration that should be
    read by a poller, across orgs: `conn` is the owner's (row-level security
    would show one org)."""
    return [(str(r["organization_id"]), str(r["id"]), str(r["type"]))
            for r in await conn.fetch(POLLING)]


async def recovered(conn: asyncpg.Connection, actor: Actor, integration_id: str) -> None:
    """The error an integration showed is over (a mailbox logs in again)."""
    updated = await conn.fetchval(
        "UPDATE integrations SET error = NULL, error_at = NULL, updated_at = now()"
        " WHERE id = $1::uuid AND error IS NOT NULL RETURNING id", integration_id)
    if updated is not None:
        await record(conn, actor, action="integration.recover", resource_type="integration",
                     resource_id=updated, changes={"error": None},
                     event_type="integration.updated", payload={"id": updated, "error": None})


WHATSAPP = (f"SELECT {COLUMNS} FROM integrations WHERE type = 'whatsapp'"
            " AND config->>'phone_number_id' = ANY($1::text[])")
WHATSAPP_VERIFY = (f"SELECT {COLUMNS} FROM integrations WHERE type = 'whatsapp' AND is_active"
                   " AND config->'lookup'->>'verify_token_sha256' = $1")


async def whatsapp_numbers(conn: asyncpg.Connection, phone_number_ids: list[str],
                           cipher: Cipher) -> dict[str, Integration]:
    """The WhatsApp integrations of these numbers, across orgs (`conn` is the
    owner's: a notification names numbers, not orgs), by number id."""
    rows = await conn.fetch(WHATSAPP, phone_number_ids)
    found = (from_row(r, cipher) for r in rows)
    return {str(i.config["phone_number_id"]): i for i in found}


async def whatsapp_by_verify_token(conn: asyncpg.Connection, token_sha256: str,
                                   cipher: Cipher) -> list[Integration]:
    """Active WhatsApp integrations whose verify token has this hash (any org)."""
    return [from_row(r, cipher) for r in await conn.fetch(WHATSAPP_VERIFY, token_sha256)]


async def of_types(conn: asyncpg.Connection, types: Sequence[str],
                   cipher: Cipher) -> dict[str, Integration]:
    """The org's active integrations of these types (the newest of each), by
    type: an agent's OpenAI or Anthropic key, say."""
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM integrations WHERE is_active"
                            " AND type = ANY($1::text[]) ORDER BY created_at DESC", list(types))
    found: dict[str, Integration] = {}
    for row in rows:
        found.setdefault(row["type"], from_row(row, cipher))
    return found
