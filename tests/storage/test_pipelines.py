"""storage.pipelines without HTTP: one default pipeline per org, stages kept
in order 0..n-1, a pipeline or stage with deals is not deleted, and the
kanban counts each stage's deals."""
from __future__ import annotations

import pytest

from core.errors import Conflict, Invalid
from storage import deals, pipelines
from storage.audit import Actor
from storage.db import Database
from storage.rows import Page
from tests.conftest import Org
from tests.storage.trail import last_seq, trail


async def test_one_default_pipeline_per_org(db: Database, org: Org) -> None:
    actor = Actor(str(org.id))
    async with db.tenant_tx(org.id) as conn:
        first = await pipelines.create(conn, actor, "First", is_default=True)
    after = await last_seq(db, org)
    async with db.tenant_tx(org.id) as conn:
        second = await pipelines.create(conn, actor, "Second", is_default=True,
                                        stages=[{"name": "Lead", "color": "#00ff00"}])
        listed = await pipelines.page(conn, Page(1, 10))
    assert {p["name"]: p["is_default"] for p in listed.data} == {"First": False, "Second": True}
    assert second["stages"][0]["color"] == "#00ff00"
    assert [(e["event_type"], e["entity_id"]) for e in (await trail(db, org, after)).events] == [
        ("pipeline.updated", first["id"]), ("pipeline.created", second["id"])]
    with pytest.raises(Invalid):
        async with db.tenant_tx(org.id) as conn:
            await pipelines.update(conn, actor, first["id"], {"is_default": None})


async def test_stages_keep_their_order(db: Database, org: Org) -> None:
    actor = Actor(str(org.id))
    async with db.tenant_tx(org.id) as conn:
        pipe = await pipelines.create(conn, actor, "P", stages=[{"name": "A"}, {"name": "B"}])
        c = await pipelines.add_stage(conn, actor, pipe["id"], "C")
    a, b = (s["id"] for s in pipe["stages"])
    assert c["order_index"] == 2
    with pytest.raises(Invalid) as caught:
        async with db.tenant_tx(org.id) as conn:
            await pipelines.reorder_stages(conn, actor, pipe["id"], [c["id"], a])
    assert caught.value.details["missing"] == [str(b)]
    after = await last_seq(db, org)
    async with db.tenant_tx(org.id) as conn:
        ordered = await pipelines.reorder_stages(conn, actor, pipe["id"], [c["id"], a, b])
    assert [(s["id"], s["order_index"]) for s in ordered] == [(c["id"], 0), (a, 1), (b, 2)]
    [event] = (await trail(db, org, after)).events
    assert event["event_type"] == "pipeline.stages.reordered"
    async with db.tenant_tx(org.id) as conn:
        await pipelines.delete_stage(conn, actor, pipe["id"], c["id"])
        assert [(s["id"], s["order_index"]) for s in await pipelines.stages(conn, pipe["id"])] \
            == [(a, 0), (b, 1)]


async def test_a_pipeline_or_stage_with_deals_is_not_deleted(db: Database, org: Org) -> None:
    actor = Actor(str(org.id))
    async with db.tenant_tx(org.id) as conn:
        pipe = await pipelines.create(conn, actor, "P", stages=[{"name": "A"}])
        deal = await deals.create(conn, actor, {"name": "D", "pipeline_id": pipe["id"]})
    stage = pipe["stages"][0]["id"]
    after = await last_seq(db, org)
    with pytest.raises(Conflict) as caught:
        async with db.tenant_tx(org.id) as conn:
            await pipelines.delete_stage(conn, actor, pipe["id"], stage)
    assert caught.value.details == {"deals": 1}
    with pytest.raises(Conflict) as caught:
        async with db.tenant_tx(org.id) as conn:
            await pipelines.delete(conn, actor, pipe["id"])
    assert caught.value.details == {"deals": 1}
    assert (await trail(db, org, after)).events == []
    async with db.tenant_tx(org.id) as conn:
        await deals.delete(conn, actor, deal["id"])
        await pipelines.delete(conn, actor, pipe["id"])
    assert [e["event_type"] for e in (await trail(db, org, after)).events] == [
        "deal.deleted", "pipeline.deleted"]


async def test_kanban_counts_each_stages_deals(db: Database, org: Org) -> None:
    actor = Actor(str(org.id))
    async with db.tenant_tx(org.id) as conn:
        pipe = await pipelines.create(conn, actor, "P", stages=[{"name": "A"}, {"name": "B"}])
        for value in ("1.25", "2.50", "4"):
            await deals.create(conn, actor, {"name": "D", "pipeline_id": pipe["id"],
                                             "value": value})
        board = await pipelines.kanban(conn, pipe["id"], per_stage=2)
    assert (board["total_count"], board["total_value"]) == (3, 7.75)
    a, b = board["stages"]
    assert (a["count"], a["value_sum"], len(a["deals"])) == (3, 7.75, 2)
    assert (b["count"], b["value_sum"], b["deals"]) == (0, 0.0, [])
