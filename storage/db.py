"""Postgres access: a `system` pool (the migrating owner, used only for
cross-tenant work such as the event relay and login) and an `app` pool that
connects as `bidi_app`, where row-level security applies.

Tenant work goes through `tenant_tx(org_id)`, which opens a transaction and
sets `app.org_id` for it alone.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy
from pgvector.asyncpg import register_vector

from core.errors import StartupError
from storage.errors import TRANSLATED, translate

APP_ROLE = "bidi_app"
UTC_SESSION = {"timezone": "UTC"}


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_json_encode = msgspec.json.Encoder().encode


def _encode_timestamp(value: datetime) -> tuple[int]:
    """`timestamp` columns hold UTC; aware values are converted, naive ones are UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds,)


def _decode_timestamp(value: tuple[int]) -> datetime:
    return _EPOCH + timedelta(microseconds=value[0])


def _encode_json(value: Any) -> str:
    # msgspec: several times faster than json.dumps on the payloads every
    # message and event carries (and it writes datetimes and UUIDs as strings).
    return _json_encode(value).decode()


async def _json_codecs(conn: asyncpg.Connection) -> None:
    for name in ("jsonb", "json"):
        await conn.set_type_codec(name, encoder=_encode_json, decoder=msgspec.json.decode,
                                  schema="pg_catalog")
    await conn.set_type_codec("timestamp", encoder=_encode_timestamp,
                              decoder=_decode_timestamp, schema="pg_catalog", format="tuple")


async def _init_connection(conn: asyncpg.Connection) -> None:
    await _json_codecs(conn)
    await register_vector(conn)


def describe(dsn: str) -> str:
    """The DSN without its password, for error messages."""
    try:
        from urllib.parse import urlsplit

        parts = urlsplit(dsn)
        host = parts.hostname or dict(
            p.split("=", 1) for p in parts.query.split("&") if "=" in p
        ).get("host", "?")
        port = f":{parts.port}" if parts.port else ""
        return f"{host}{port}{parts.path}"
    except ValueError:
        return "<unparseable DATABASE_URL>"


async def connect_admin(dsn: str, timeout: float = 10.0) -> asyncpg.Connection:
    """One connection as the owner, with a clear error when it cannot be had."""
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout, server_settings=UTC_SESSION)
    except (OSError, asyncpg.PostgresError, TimeoutError, ValueError) as exc:
        raise StartupError(f"cannot connect to Postgres at {describe(dsn)}: {exc}") from exc
    await _json_codecs(conn)
    return conn


@dataclass
class Database:
    """Both pools; `async with Database(dsn, app_password)` opens and closes them."""

    dsn: str
    app_password: str | None = None
    min_size: int = 1
    max_size: int = 10
    system: asyncpg.Pool | None = None
    app: asyncpg.Pool | None = None

    async def __aenter__(self) -> Database:
        try:
            self.system = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=max(2, self.max_size // 2), init=_init_connection,
                server_settings=UTC_SESSION)
            self.app = await asyncpg.create_pool(
                self.dsn,
                user=APP_ROLE,
                password=self.app_password,
                min_size=self.min_size,
                max_size=self.max_size,
                init=_init_connection,
                reset=_keep_session,
                server_settings=UTC_SESSION,
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            await self.close()
            raise StartupError(f"cannot open pools to {describe(self.dsn)}: {exc}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for pool in (self.app, self.system):
            if pool is not None:
                await pool.close()
        self.app = self.system = None

    async def ping(self, timeout: float | None = None) -> None:
        """One round trip on the application pool (raises when Postgres is not there)."""
        if self.app is None:
            raise RuntimeError("Database is not open")
        async with self.app.acquire(timeout=timeout) as conn:
            await conn.fetchval("SELECT 1")

    @asynccontextmanager
    async def tenant_tx(
        self, org_id: UUID | str, user_id: UUID | str | None = None, *,
        generic_plans: bool = False,
    ) -> AsyncIterator[asyncpg.Connection]:
        """A transaction as `bidi_app` scoped to one org (and optionally a user).

        BEGIN and the settings travel in one round trip (both ids are
        re-formatted as UUIDs, so nothing but hex and dashes reaches the
        text); with COMMIT and the pool's no-op reset a short read costs
        three round trips, not five. Nested scopes use `savepoint(conn)`.

        `generic_plans`: prepared statements skip planning on each run (for
        statements shaped so that their generic plan is the good one)."""
        if self.app is None:
            raise RuntimeError("Database is not open")
        org = str(UUID(str(org_id)))
        user = str(UUID(str(user_id))) if user_id is not None else ""
        plans = ", set_config('plan_cache_mode', 'force_generic_plan', true)" \
            if generic_plans else ""
        async with self.app.acquire() as proxy:
            conn = connection(proxy)
            await conn.execute(f"BEGIN; SELECT set_config('app.org_id', '{org}', true),"
                               f" set_config('app.user_id', '{user}', true){plans}")
            try:
                yield conn
            except BaseException as exc:
                await _undo(conn, "ROLLBACK")
                _raise_translated(exc)
                raise
            try:
                await conn.execute("COMMIT")
            except TRANSLATED as exc:  # a deferred constraint, a timeout
                _raise_translated(exc)
                raise

    @asynccontextmanager
    async def system_tx(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction as the owner: cross-tenant work only."""
        if self.system is None:
            raise RuntimeError("Database is not open")
        try:
            async with self.system.acquire() as proxy, proxy.transaction():
                yield connection(proxy)
        except TRANSLATED as exc:
            _raise_translated(exc)
            raise


def connection(proxy: PoolConnectionProxy[asyncpg.Record]) -> asyncpg.Connection:
    """A pooled connection as the `asyncpg.Connection` storage functions take."""
    # The pool's proxy forwards every Connection method to the connection it holds.
    return cast(asyncpg.Connection, proxy)


def _raise_translated(exc: BaseException) -> None:
    """Raise the project's error for a database error (storage.errors)."""
    mapped = translate(exc)
    if mapped is not exc:
        raise mapped from exc


@asynccontextmanager
async def savepoint(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """A nested scope inside `tenant_tx`: an error undoes only what ran in it."""
    await conn.execute("SAVEPOINT bidi_nested")
    try:
        yield conn
    except BaseException:
        await _undo(conn, "ROLLBACK TO SAVEPOINT bidi_nested")
        raise
    await conn.execute("RELEASE SAVEPOINT bidi_nested")


async def _undo(conn: asyncpg.Connection, statement: str) -> None:
    """Roll back after an error; a connection that cannot (its query is being
    cancelled, its socket is gone) is dropped, and the pool opens another."""
    try:
        await conn.execute(statement)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        conn.terminate()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The `app` pool's reset: its sessions hold nothing but transaction-local
    settings (an open transaction is still rolled back by the pool itself),
    so the default RESET ALL / UNLISTEN round trip on every release is saved."""
