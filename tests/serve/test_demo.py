from __future__ import annotations

from core.settings import Settings
from serve.demo import CONTACTS, STAGES, seed_demo
from storage.db import Database


async def test_demo_seed_creates_a_pipeline_and_contacts_once(settings: Settings,
                                                               db: Database) -> None:
    org_id = await seed_demo(settings)
    assert await seed_demo(settings) == org_id  # idempotent
    async with db.tenant_tx(org_id) as conn:
        stages = await conn.fetch(
            "SELECT s.name FROM pipeline_stages s JOIN pipelines p ON p.id = s.pipeline_id"
            " WHERE p.is_default ORDER BY s.order_index")
        assert [r["name"] for r in stages] == [name for name, _ in STAGES]
        assert await conn.fetchval("SELECT count(*) FROM contacts") == len(CONTACTS)
        assert await conn.fetchval(
            "SELECT count(*) FROM events WHERE event_type = 'organization.seeded'") == 1
