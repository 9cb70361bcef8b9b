"""storage.deals without HTTP: a deal's references are the org's own, a
stage belongs to the deal's pipeline, and a stage move writes its audit
row, `deal.updated` and `deal.stage.changed` together (nothing when the
stage stays)."""
from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from core.errors import Invalid, NotFound
from storage import contacts, deals, pipelines
from storage.audit import Actor
from storage.db import Database
from storage.deals import DealFilters
from storage.rows import Page
from tests.conftest import Org, create_org
from tests.storage.trail import last_seq, member, trail


async def _pipeline(db: Database, org: Org, *names: str) -> pipelines.Pipeline:
    async with db.tenant_tx(org.id) as conn:
        return await pipelines.create(conn, Actor(str(org.id)), "Sales",
                                      stages=[{"name": n} for n in names])


async def test_a_new_deal_starts_in_the_first_stage(db: Database, org: Org) -> None:
    pipe = await _pipeline(db, org, "Lead", "Won")
    async with db.tenant_tx(org.id) as conn:
        deal = await deals.create(conn, Actor(str(org.id)), {
            "name": "Big", "pipeline_id": pipe["id"], "value": Decimal("10.50")})
    assert deal["stage_id"] == pipe["stages"][0]["id"]
    assert deal["value"] == 10.5  # a number, as the API shows it
    [event] = [e for e in (await trail(db, org)).events if e["event_type"] == "deal.created"]
    assert event["payload"]["value"] == 10.5
    assert event["payload"]["stage_id"] == str(pipe["stages"][0]["id"])


async def test_references_must_be_visible_in_the_org(db: Database, org: Org) -> None:
    pipe = await _pipeline(db, org, "Lead")
    empty = await _pipeline(db, org)
    other = await create_org(db)
    async with db.tenant_tx(other.id) as conn:
        theirs = await contacts.create(conn, Actor(str(other.id)), {"first_name": "T"})
    actor = Actor(str(org.id))
    for fields, field in (
            ({"pipeline_id": uuid.uuid4()}, "pipeline_id"),
            ({"pipeline_id": empty["id"]}, "pipeline_id"),
            ({"pipeline_id": pipe["id"], "stage_id": uuid.uuid4()}, "stage_id"),
            ({"pipeline_id": pipe["id"], "contact_id": theirs["id"]}, "contact_id")):
        with pytest.raises(Invalid) as caught:
            async with db.tenant_tx(org.id) as conn:
                await deals.create(conn, actor, {"name": "D", **fields})
        assert caught.value.field == field
    async with db.tenant_tx(org.id) as conn:
        assert (await deals.page(conn, DealFilters(), Page())).total == 0


async def test_move_stage_writes_the_audit_row_and_both_events(db: Database, org: Org) -> None:
    actor = await member(db, org)
    pipe = await _pipeline(db, org, "Lead", "Won")
    lead, won = (s["id"] for s in pipe["stages"])
    async with db.tenant_tx(org.id) as conn:
        deal = await deals.create(conn, actor, {"name": "D", "pipeline_id": pipe["id"]})
    after = await last_seq(db, org)
    async with db.tenant_tx(org.id) as conn:
        moved = await deals.move_stage(conn, actor, deal["id"], won)
    assert moved["stage_id"] == won
    found = await trail(db, org, after)
    assert found.audit[-1]["action"] == "deal.update"
    assert found.audit[-1]["changes"] == {"stage_id": [str(lead), str(won)]}
    assert [(e["event_type"], e["payload"], e["user_id"]) for e in found.events] == [
        ("deal.updated", {"id": str(deal["id"]), "changes": {"stage_id": [str(lead), str(won)]}},
         uuid.UUID(actor.user_id)),
        ("deal.stage.changed", {"deal_id": str(deal["id"]), "from_stage_id": str(lead),
                                "to_stage_id": str(won), "pipeline_id": str(pipe["id"])},
         uuid.UUID(actor.user_id))]
    again = await last_seq(db, org)
    async with db.tenant_tx(org.id) as conn:  # already there: nothing to record
        await deals.move_stage(conn, actor, deal["id"], won)
    assert (await trail(db, org, again)).events == []


async def test_a_stage_must_be_in_the_deals_pipeline(db: Database, org: Org) -> None:
    first, second = await _pipeline(db, org, "A"), await _pipeline(db, org, "B")
    actor = Actor(str(org.id))
    async with db.tenant_tx(org.id) as conn:
        deal = await deals.create(conn, actor, {"name": "D", "pipeline_id": first["id"]})
    with pytest.raises(Invalid) as caught:
        async with db.tenant_tx(org.id) as conn:
            await deals.move_stage(conn, actor, deal["id"], second["stages"][0]["id"])
    assert caught.value.field == "stage_id"
    async with db.tenant_tx(org.id) as conn:  # to another pipeline: its first stage
        moved = await deals.update(conn, actor, deal["id"], {"pipeline_id": second["id"]})
    assert moved["stage_id"] == second["stages"][0]["id"]
    with pytest.raises(Invalid) as caught:
        async with db.tenant_tx(org.id) as conn:
            await deals.update(conn, actor, deal["id"], {"name": None})
    assert caught.value.field == "name"
    other = await create_org(db)
    with pytest.raises(NotFound):
        async with db.tenant_tx(other.id) as conn:
            await deals.move_stage(conn, Actor(str(other.id)), deal["id"],
                                   second["stages"][0]["id"])
