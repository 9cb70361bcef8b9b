"""Row-level security, tried from the application role itself."""
from __future__ import annotations

import asyncpg
import pytest

from core.settings import Settings
from storage.db import APP_ROLE, Database
from tests.conftest import Org, create_org

TENANT_TABLES = [
    "organization_members", "companies", "contacts", "pipelines", "pipeline_stages", "deals",
    "chats", "messages", "message_attachments", "ai_agents", "agent_memories",
    "agent_executions", "campaigns", "campaign_messages", "subscriptions", "usage_logs",
    "invoices", "integrations", "webhooks", "webhook_deliveries", "events", "audit_logs",
    "api_keys", "refresh_tokens", "channel_cursors", "invitations", "notes",
]


async def test_app_role_is_powerless(settings: Settings) -> None:
    assert settings.database_url is not None
    conn = await asyncpg.connect(settings.database_url)
    try:
        role = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles"
            " WHERE rolname = $1", APP_ROLE)
        assert role is not None
        assert not any(role.values())
        owned = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
            " WHERE r.rolname = $1", APP_ROLE)
        assert owned == 0
        rows = await conn.fetch(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
            " WHERE relname = ANY($1::text[]) AND relkind = 'r'"
            " AND relnamespace = 'public'::regnamespace",  # the engine's, not a bench's
            [*TENANT_TABLES, "organizations", "users", "oauth_connections"])
        assert len(rows) == len(TENANT_TABLES) + 3
        for r in rows:
            assert r["relrowsecurity"] and r["relforcerowsecurity"], r["relname"]
    finally:
        await conn.close()


async def test_pool_connects_as_app_role(db: Database, org: Org) -> None:
    async with db.tenant_tx(org.id) as conn:
        assert await conn.fetchval("SELECT current_user") == APP_ROLE


async def _seed_contact(db: Database, org: Org, email: str) -> None:
    async with db.tenant_tx(org.id) as conn:
        await conn.execute(
            "INSERT INTO contacts (organization_id, first_name, email) VALUES ($1, 'A', $2)",
            org.id, email)
        await conn.execute(
            "INSERT INTO events (organization_id, event_type, payload) VALUES"
            " ($1, 'contact.created', '{}'::jsonb)", org.id)


async def test_rows_of_one_org_are_invisible_to_another(db: Database, org: Org) -> None:
    other = await create_org(db)
    await _seed_contact(db, org, "a@example.com")
    await _seed_contact(db, other, "b@example.com")
    async with db.tenant_tx(org.id) as conn:
        emails = [r["email"] for r in await conn.fetch("SELECT email FROM contacts")]
        assert emails == ["a@example.com"]
        orgs = await conn.fetch("SELECT id FROM organizations")
        assert [r["id"] for r in orgs] == [org.id]
        assert await conn.fetchval(
            "SELECT count(*) FROM events WHERE organization_id = $1", other.id) == 0
    async with db.tenant_tx(other.id) as conn:
        emails = [r["email"] for r in await conn.fetch("SELECT email FROM contacts")]
        assert emails == ["b@example.com"]
        # an UPDATE or DELETE aimed at the other org touches nothing
        assert await conn.execute(
            "UPDATE contacts SET first_name = 'X' WHERE organization_id = $1", org.id
        ) == "UPDATE 0"
        assert await conn.execute(
            "DELETE FROM contacts WHERE organization_id = $1", org.id) == "DELETE 0"


async def test_no_context_sees_nothing(db: Database, org: Org) -> None:
    await _seed_contact(db, org, "c@example.com")
    assert db.app is not None
    async with db.app.acquire() as conn:
        for table in TENANT_TABLES + ["organizations", "users"]:
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        # a context emptied at the end of an earlier transaction is still no context
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.org_id', $1, true)", str(org.id))
            assert await conn.fetchval("SELECT count(*) FROM contacts") == 1
        assert await conn.fetchval("SELECT count(*) FROM contacts") == 0


async def test_insert_for_another_org_is_rejected(db: Database, org: Org) -> None:
    other = await create_org(db)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with db.tenant_tx(org.id) as conn:
            await conn.execute(
                "INSERT INTO contacts (organization_id, first_name) VALUES ($1, 'Mallory')",
                other.id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with db.tenant_tx(org.id) as conn:
            await conn.execute(
                "INSERT INTO events (organization_id, event_type, payload)"
                " VALUES ($1, 'x', '{}'::jsonb)", other.id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with db.tenant_tx(org.id) as conn:
            await conn.execute(
                "INSERT INTO contacts (organization_id, first_name) VALUES ($1, 'A')", org.id)
            await conn.execute(
                "UPDATE contacts SET organization_id = $1 WHERE organization_id = $2",
                other.id, org.id)
    async with db.system_tx() as conn:
        assert await conn.fetchval(
            "SELECT count(*) FROM contacts WHERE organization_id = ANY($1::uuid[])",
            [org.id, other.id]) == 0


async def test_app_role_cannot_disable_rls_or_escalate(db: Database, org: Org) -> None:
    for stmt in ("ALTER TABLE contacts DISABLE ROW LEVEL SECURITY",
                 "SET ROLE postgres",
                 "DROP POLICY tenant_isolation ON contacts"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with db.tenant_tx(org.id) as conn:
                await conn.execute(stmt)


async def test_contact_search_uses_its_index_under_rls(db: Database, org: Org) -> None:
    """The search terms' prefix range is leakproof, so Postgres may use the
    index next to the policy's condition (LIKE could not be)."""
    async with db.tenant_tx(org.id) as conn:
        await conn.execute(
            "INSERT INTO contacts (organization_id, first_name, email) SELECT $1, 'n' || g,"
            " 'c' || g || '@example.com' FROM generate_series(1, 3000) g", org.id)
        await conn.execute("ANALYZE contact_terms")
        plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN SELECT contact_id FROM contact_terms WHERE term ~>=~ 'n12'"
            " AND term ~<~ 'n13'"))
        found = await conn.fetch(
            "SELECT c.first_name FROM contacts c WHERE c.id IN (SELECT contact_id FROM"
            " contact_terms WHERE term ~>=~ 'n12' AND term ~<~ 'n13') ORDER BY 1")
    assert "Index Only Scan using idx_contact_terms_search" in plan, plan
    assert [r[0] for r in found][:3] == ["n12", "n120", "n1200"] and len(found) == 111


async def test_app_role_cannot_read_credentials(db: Database, org: Org) -> None:
    """Profiles of members are readable; password hashes and TOTP secrets are not."""
    async with db.system_tx() as conn:
        user_id = await conn.fetchval(
            "INSERT INTO users (email, password_hash, mfa_secret) VALUES ($1, 'h', 's')"
            " RETURNING id", f"cred-{org.slug}@example.com")
        await conn.execute("INSERT INTO organization_members (organization_id, user_id, role)"
                           " VALUES ($1, $2, 'bidi')", org.id, user_id)
    async with db.tenant_tx(org.id) as conn:
        assert await conn.fetchval("SELECT email FROM users WHERE id = $1", user_id)
    for column in ("password_hash", "mfa_secret", "mfa_recovery_codes", "mfa_last_step"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with db.tenant_tx(org.id) as conn:
                await conn.fetchval(f"SELECT {column} FROM users WHERE id = $1", user_id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with db.tenant_tx(org.id, str(user_id)) as conn:
            await conn.execute("UPDATE users SET password_hash = 'x' WHERE id = $1", user_id)
