"""Tenant transactions on pooled connections: the org context lives exactly as
long as its transaction, errors undo everything, savepoints undo alone."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from core.settings import Settings
from storage.db import Database, savepoint
from storage.embedded import NAPTIME
from tests.conftest import Org


@pytest.fixture
async def one_conn(settings: Settings) -> AsyncIterator[Database]:
    """A pool of one connection: every acquire gets the same session."""
    assert settings.database_url is not None
    async with Database(settings.database_url, settings.app_db_password.get_secret_value(),
                        min_size=1, max_size=1) as database:
        yield database


async def _count(db: Database, org: Org, first_name: str) -> int:
    async with db.tenant_tx(org.id) as conn:
        return await conn.fetchval(  # type: ignore[no-any-return]
            "SELECT count(*) FROM contacts WHERE first_name = $1", first_name)


async def test_context_ends_with_its_transaction(one_conn: Database, org: Org) -> None:
    async with one_conn.tenant_tx(org.id, org.id, generic_plans=True) as conn:
        await conn.execute("INSERT INTO contacts (organization_id, first_name)"
                           " VALUES ($1, 'Kept')", org.id)
        assert await conn.fetchval("SELECT current_setting('app.org_id')") == str(org.id)
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
    assert one_conn.app is not None
    async with one_conn.app.acquire() as conn:  # the same session, reused
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT current_setting('app.org_id', true)") == ""
        assert await conn.fetchval("SELECT current_setting('app.user_id', true)") == ""
        assert await conn.fetchval("SHOW plan_cache_mode") == "auto"
        assert await conn.fetchval("SELECT count(*) FROM contacts") == 0
    assert await _count(one_conn, org, "Kept") == 1


async def test_an_error_rolls_everything_back(one_conn: Database, org: Org) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with one_conn.tenant_tx(org.id) as conn:
            await conn.execute("INSERT INTO contacts (organization_id, first_name)"
                               " VALUES ($1, 'Undone')", org.id)
            raise RuntimeError("boom")
    assert await _count(one_conn, org, "Undone") == 0


async def test_a_savepoint_undoes_only_its_own_work(one_conn: Database, org: Org) -> None:
    async with one_conn.tenant_tx(org.id) as conn:
        await conn.execute("INSERT INTO contacts (organization_id, first_name, email)"
                           " VALUES ($1, 'First', 'dup@example.com')", org.id)
        with pytest.raises(asyncpg.UniqueViolationError):
            async with savepoint(conn):
                await conn.execute("INSERT INTO contacts (organization_id, first_name, email)"
                                   " VALUES ($1, 'Second', 'dup@example.com')", org.id)
        async with savepoint(conn):
            await conn.execute("INSERT INTO contacts (organization_id, first_name)"
                               " VALUES ($1, 'Third')", org.id)
    assert [await _count(one_conn, org, n) for n in ("First", "Second", "Third")] == [1, 0, 1]


async def test_a_cancelled_query_leaves_a_usable_pool(one_conn: Database, org: Org) -> None:
    started = asyncio.Event()
    lock = uuid.uuid4().int % 2**62  # one key for this test alone

    async def blocked() -> None:
        async with one_conn.tenant_tx(org.id) as conn:
            await conn.execute("INSERT INTO contacts (organization_id, first_name)"
                               " VALUES ($1, 'Cancelled')", org.id)
            started.set()
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)  # held below

    async with one_conn.system_tx() as holder:
        await holder.execute("SELECT pg_advisory_xact_lock($1)", lock)
        task = asyncio.create_task(blocked())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # the only connection was dropped or rolled back: the insert is gone, work goes on
    assert await asyncio.wait_for(_count(one_conn, org, "Cancelled"), 10) == 0


async def test_the_embedded_server_analyzes_new_tables_within_seconds(db: Database) -> None:
    # The session's Postgres is the embedded one (no DATABASE_URL in tests).
    async with db.system_tx() as conn:
        assert await conn.fetchval("SHOW autovacuum_naptime") == NAPTIME
        assert await conn.fetchval("SHOW autovacuum") == "on"
