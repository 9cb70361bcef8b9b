"""The app role's own limits (migration 009): every `bidi_app` session starts
with a statement timeout and an idle-in-transaction timeout, so no request
or actor turn can hold a lock, or the event log's commit fence, for long."""
from __future__ import annotations

import time

import asyncpg
import pytest

from core.settings import Settings
from storage.db import APP_ROLE, Database


async def _app_connection(settings: Settings) -> asyncpg.Connection:
    assert settings.database_url is not None
    return await asyncpg.connect(settings.database_url, user=APP_ROLE,
                                 password=settings.app_db_password.get_secret_value())


async def test_app_sessions_start_with_the_role_timeouts(settings: Settings) -> None:
    conn = await _app_connection(settings)
    try:
        assert await conn.fetchval("SHOW statement_timeout") == "30s"
        assert await conn.fetchval("SHOW idle_in_transaction_session_timeout") == "1min"
        sources = dict(await conn.fetch(
            "SELECT name, source FROM pg_settings WHERE name IN"
            " ('statement_timeout', 'idle_in_transaction_session_timeout')"))
        assert sources == {"statement_timeout": "user",
                           "idle_in_transaction_session_timeout": "user"}
    finally:
        await conn.close()


async def test_the_pools_sessions_have_them_too(db: Database) -> None:
    assert db.app is not None
    async with db.app.acquire() as conn:
        assert await conn.fetchval("SHOW statement_timeout") == "30s"


async def test_a_statement_past_the_role_limit_is_cancelled(settings: Settings) -> None:
    conn = await _app_connection(settings)
    try:
        started = time.monotonic()
        with pytest.raises(asyncpg.QueryCanceledError, match="statement timeout"):
            await conn.fetchval("SELECT pg_sleep(40)")
        assert 29.0 < time.monotonic() - started < 39.0
    finally:
        await conn.close()
