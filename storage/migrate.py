"""Migration runner: ordered `migrations/NNN_name.sql`, all pending files in
one transaction under an advisory lock, recorded in `schema_migrations`.

Safe to run twice (applied files are skipped) and from two processes at once
(the second waits on the lock, then finds nothing to do).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from core.errors import StartupError

# Arbitrary constant: the advisory lock key shared by every migrating process.
LOCK_KEY = 0x0B1D1_0001
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def discover() -> list[Migration]:
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StartupError(f"two migrations share a version: {versions}")
    return found


async def migrate(conn: asyncpg.Connection, *, app_password: str | None = None) -> list[str]:
    """Apply pending migrations; return the names applied (empty when none)."""
    migrations = discover()
    if not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')"
    ):
        version = await conn.fetchval("SHOW server_version")
        raise StartupError(
            f"this Postgres ({version}) has no pgvector extension: install pgvector "
            "on the database server, or leave DATABASE_URL unset for the embedded one"
        )
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for m in migrations:
            if m.version in done:
                continue
            try:
                await conn.execute(m.sql)
            except asyncpg.PostgresError as exc:
                raise StartupError(f"migration {m.name} failed: {exc}") from exc
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name
            )
            applied.append(m.name)
        if app_password is not None:
            # Password is not a bindable parameter in ALTER ROLE: quote it.
            quoted = await conn.fetchval("SELECT quote_literal($1)", app_password)
            await conn.execute(f"ALTER ROLE bidi_app PASSWORD {quoted}")
    return applied


async def applied_versions(conn: asyncpg.Connection) -> list[int]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return []
    return [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
