"""`bidi up --demo`: a demo organization with a pipeline and a few contacts.
Idempotent: a second run finds the org by its slug and leaves it alone."""
from __future__ import annotations

from core.settings import Settings
from storage.db import connect_admin

STAGES = [("Lead", "#94a3b8"), ("Qualified", "#60a5fa"), ("Proposal", "#f59e0b"),
          ("Negotiation", "#a78bfa"), ("Won", "#22c55e"), ("Lost", "#ef4444")]
CONTACTS = [
    ("Ada", "Lovelace", "ada@example.com", "ada_l", ["vip", "ai"]),
    ("Alan", "Turing", "alan@example.com", "alan_t", ["ai"]),
    ("Grace", "Hopper", "grace@example.com", None, ["navy"]),
]


async def seed_demo(settings: Settings) -> str:
    assert settings.database_url is not None
    conn = await connect_admin(settings.database_url)
    try:
        async with conn.transaction():
            org_id = await conn.fetchval("SELECT id FROM organizations WHERE slug = 'demo'")
            if org_id is not None:
                return str(org_id)
            org_id = await conn.fetchval(
                "INSERT INTO organizations (name, slug) VALUES ('Demo', 'demo') RETURNING id"
            )
            pipeline_id = await conn.fetchval(
                "INSERT INTO pipelines (organization_id, name, is_default)"
                " VALUES ($1, 'Sales', true) RETURNING id", org_id)
            await conn.executemany(
                "INSERT INTO pipeline_stages (organization_id, pipeline_id, name, order_index,"
                " color) VALUES ($1, $2, $3, $4, $5)",
                [(org_id, pipeline_id, name, i, color) for i, (name, color) in enumerate(STAGES)],
            )
            await conn.executemany(
                "INSERT INTO contacts (organization_id, first_name, last_name, email,"
                " telegram_username, tags, source) VALUES ($1, $2, $3, $4, $5, $6, 'manual')",
                [(org_id, *c) for c in CONTACTS],
            )
            await conn.execute(
                "INSERT INTO events (organization_id, event_type, entity_type, entity_id, payload)"
                " VALUES ($1, 'organization.seeded', 'organization', $1, $2)",
                org_id, {"pipeline_id": str(pipeline_id), "contacts": len(CONTACTS)},
            )
        return str(org_id)
    finally:
        await conn.close()
