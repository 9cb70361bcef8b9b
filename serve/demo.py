"""`bidi up --demo`: a demo organization with a pipeline and a few contacts.
Idempotent: a second run finds the org by its slug and leaves it alone."""
from __future__ import annotations

from core.errors import ConfigError
from core.settings import Settings
from storage import contacts, organizations, pipelines
from storage.audit import Actor, append_event
from storage.db import Database
from storage.rows import Page

STAGES = [("Lead", "#94a3b8"), ("Qualified", "#60a5fa"), ("Proposal", "#f59e0b"),
          ("Negotiation", "#a78bfa"), ("Won", "#22c55e"), ("Lost", "#ef4444")]
CONTACTS = [
    ("Ada", "Lovelace", "ada@example.com", "ada_l", ["vip", "ai"]),
    ("Alan", "Turing", "alan@example.com", "alan_t", ["ai"]),
    ("Grace", "Hopper", "grace@example.com", None, ["navy"]),
]


async def seed_demo(settings: Settings) -> str:
    """Seed through the storage functions the API uses, in a tenant
    transaction as the application role (row-level security applies), so the
    demo has the same rules, audit rows and events as anything made through
    the API. Idempotent: an org that has its pipeline is left alone."""
    if settings.database_url is None:
        raise ConfigError("the demo needs a resolved DATABASE_URL")
    async with Database(settings.database_url, settings.app_db_password.get_secret_value(),
                        max_size=2) as db:
        async with db.system_tx() as conn:
            org_id = (await organizations.by_slug(conn, "demo")
                      or await organizations.create(conn, "Demo", "demo"))
        async with db.tenant_tx(org_id) as conn:
            if (await pipelines.page(conn, Page(1, 1))).total:
                return str(org_id)
            actor = Actor(str(org_id))
            pipeline = await pipelines.create(
                conn, actor, "Sales", is_default=True,
                stages=[{"name": name, "color": color} for name, color in STAGES])
            for first, last, email, telegram, tags in CONTACTS:
                await contacts.create(conn, actor, {
                    "first_name": first, "last_name": last, "email": email,
                    "telegram_username": telegram, "tags": tags, "source": "manual"})
            await append_event(conn, str(org_id), "organization.seeded", "organization",
                               org_id, {"pipeline_id": str(pipeline["id"]),
                                        "contacts": len(CONTACTS)})
    return str(org_id)
