from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from core.settings import Settings
from storage.migrate import discover, migrate
from tests.storage.spec_schema import SPEC_INDEXES, SPEC_TABLES


@pytest.fixture
async def empty_db(settings: Settings) -> AsyncIterator[str]:
    """A brand-new empty database in the session's Postgres; dropped after."""
    assert settings.database_url is not None
    name = f"mig_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(settings.database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        yield settings.database_url.replace("/bidi?", f"/{name}?")
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def test_migrations_apply_on_empty_database_then_noop(empty_db: str) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        first = await migrate(conn)
        assert first == [m.name for m in discover()]
        second = await migrate(conn)
        assert second == []
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in discover()]
    finally:
        await conn.close()


async def test_two_processes_migrating_at_once_apply_each_file_once(empty_db: str) -> None:
    a, b = await asyncpg.connect(empty_db), await asyncpg.connect(empty_db)
    try:
        done_a, done_b = await asyncio.gather(migrate(a), migrate(b))
        assert sorted(done_a + done_b) == sorted(m.name for m in discover())
        assert not set(done_a) & set(done_b)
    finally:
        await a.close()
        await b.close()


async def _columns(conn: asyncpg.Connection) -> dict[str, set[str]]:
    rows = await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'public'"
    )
    found: dict[str, set[str]] = {}
    for r in rows:
        found.setdefault(r["table_name"], set()).add(r["column_name"])
    return found


async def test_every_spec_table_exists_with_its_columns(settings: Settings) -> None:
    assert settings.database_url is not None
    conn = await asyncpg.connect(settings.database_url)
    try:
        found = await _columns(conn)
    finally:
        await conn.close()
    assert len(SPEC_TABLES) == 25
    for table, columns in SPEC_TABLES.items():
        assert table in found, f"missing table {table}"
        missing = set(columns) - found[table]
        assert not missing, f"{table} lacks {missing}"
    # DESIGN.md additions
    assert {"seq"} <= found["events"]
    assert {"external_id", "status"} <= found["messages"]
    assert "last_inbound_at" in found["chats"]
    for table in ("api_keys", "refresh_tokens", "channel_cursors"):
        assert table in found


async def test_every_spec_index_exists_on_its_table(settings: Settings) -> None:
    assert settings.database_url is not None
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        )
    finally:
        await conn.close()
    indexes = {r["indexname"]: r for r in rows}
    assert len(SPEC_INDEXES) == 14
    for name, table in SPEC_INDEXES.items():
        assert name in indexes, f"missing index {name}"
        assert indexes[name]["tablename"] == table
    assert "hnsw" in indexes["idx_agent_memories_embedding"]["indexdef"]
    assert "vector_cosine_ops" in indexes["idx_agent_memories_embedding"]["indexdef"]
    unique_defs = " ".join(r["indexdef"] for r in rows if "UNIQUE" in r["indexdef"])
    assert "(chat_id, external_id)" in unique_defs
    assert "events USING btree (seq)" in unique_defs


async def test_vector_extension_is_installed(settings: Settings) -> None:
    assert settings.database_url is not None
    conn = await asyncpg.connect(settings.database_url)
    try:
        assert await conn.fetchval("SELECT extname FROM pg_extension WHERE extname = 'vector'")
    finally:
        await conn.close()
