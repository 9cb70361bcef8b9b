"""The registry and the eleven tools against real Postgres: schemas checked
before a handler runs, the allow-list, row-level security on every tool,
the audit rows and events each mutation writes in the agent's name, held
calls run once approved, and follow-ups that are rows."""
from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents import toolbox
from agents.llm import ToolCall
from agents.tools import ToolContext, ToolOutcome
from storage import followups
from storage.db import Database
from tests.agents.injection_corpus import World, build_world, chat_row
from tests.agents.scripted import Outbox, TableMemory

REGISTRY = toolbox.registry()
ALL = list(REGISTRY.tools)
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _ctx(world: World, outbox: Outbox | None = None, **over: Any) -> ToolContext:
    ctx = ToolContext(db=world.db, org_id=str(world.ours.id), agent_id=world.agent_id,
                      chat_id=world.chat_id, contact_id=world.contact_id, actor=world.actor(),
                      memory=TableMemory(world.db), send=outbox or Outbox(), clock=lambda: NOW)
    return dataclasses.replace(ctx, **over)


async def _call(ctx: ToolContext, name: str, args: dict[str, Any] | str,
                allowed: list[str] | None = None) -> ToolOutcome:
    text = args if isinstance(args, str) else json.dumps(args)
    return await REGISTRY.call(ctx, ToolCall("c1", name, text), ALL if allowed is None else allowed)


def test_eleven_tools_each_with_a_checked_schema() -> None:
    assert sorted(ALL) == sorted([
        "search_contacts", "get_contact", "update_contact", "create_deal", "move_deal_stage",
        "add_note", "schedule_followup", "search_memory", "save_memory", "send_message",
        "handoff_to_human"])
    for spec in REGISTRY.specs(ALL):
        assert spec.parameters["type"] == "object" and spec.description
        assert spec.parameters["additionalProperties"] is False


def test_specs_are_the_allow_list_only() -> None:
    specs = REGISTRY.specs(["send_message", "nope", "get_contact", "send_message"])
    assert [s.name for s in specs] == ["send_message", "get_contact"]


@pytest.mark.parametrize(("name", "args", "where"), [
    ("search_contacts", {"query": "a", "limit": 21}, "limit"),
    ("search_contacts", {}, "arguments"),
    ("get_contact", {"contact_id": "not-a-uuid"}, "contact_id"),
    ("update_contact", {"fields": {}}, "fields"),
    ("update_contact", {"fields": {"metadata": {}}}, "fields"),
    ("update_contact", {"fields": {"email": "no at sign"}}, "fields/email"),
    ("create_deal", {"name": "D", "currency": "usd"}, "currency"),
    ("create_deal", {"name": "D", "value": -1}, "value"),
    ("move_deal_stage", {"deal_id": str(uuid.uuid4())}, "arguments"),
    ("add_note", {"body": ""}, "body"),
    ("schedule_followup", {"note": "n"}, "arguments"),
    ("schedule_followup", {"note": "n", "in_hours": 1, "at": "2026-01-01T00:00:00"},
     "arguments"),
    ("search_memory", {"query": "q", "limit": 50}, "limit"),
    ("save_memory", {"content": "c", "memory_type": "secret"}, "memory_type"),
    ("send_message", {"text": "t" * 4001}, "text"),
    ("handoff_to_human", {}, "arguments"),
])
def test_arguments_are_validated_before_anything_runs(name: str, args: dict[str, Any],
                                                      where: str) -> None:
    parsed, bad = REGISTRY.parse(name, json.dumps(args))
    assert parsed is None and bad is not None and bad.status == "invalid"
    assert bad.error is not None and bad.error.startswith(f"{where}:")


async def test_refused_and_invalid_calls_never_reach_a_handler(db: Database) -> None:
    world = await build_world(db)
    outbox = Outbox()
    ctx = _ctx(world, outbox)
    refused = await _call(ctx, "send_message", {"text": "hi"}, allowed=["get_contact"])
    unknown = await _call(ctx, "drop_tables", {})
    malformed = await _call(ctx, "send_message", '{"text": ')
    assert [refused.status, unknown.status, malformed.status] == ["refused"] * 2 + ["invalid"]
    assert refused.reason == "tool not in the agent's allow-list"
    assert outbox.sent == []
    assert json.loads(unknown.feedback())["error"] == "unknown tool: drop_tables"


async def test_every_tool_sees_only_its_org(db: Database) -> None:
    world = await build_world(db)
    ids = world.ids
    ctx = _ctx(world)
    found = await _call(ctx, "search_contacts", {"query": "eve"})
    assert found.result == {"total": 0, "contacts": []}
    for name, args in (
            ("get_contact", {"contact_id": ids["eve"]}),
            ("create_deal", {"name": "D", "pipeline_id": ids["eve_pipeline"]}),
            ("move_deal_stage", {"deal_id": ids["eve_deal"], "stage_id": ids["eve_won"]}),
            ("move_deal_stage", {"deal_id": ids["alice_deal"], "stage_id": ids["eve_won"]}),
            ("add_note", {"body": "x", "deal_id": ids["eve_deal"]})):
        outcome = await _call(ctx, name, args)
        assert outcome.status == "error", name
        assert outcome.error is not None and "not found" in outcome.error
        assert ids["eve_email"] not in outcome.feedback()
    # held calls a human approves still cannot reach another org
    for name, args in (("update_contact", {"contact_id": ids["eve"], "fields": {"role": "x"}}),
                       ("create_deal", {"name": "D", "contact_id": ids["eve"]}),
                       ("add_note", {"body": "x", "contact_id": ids["eve"]})):
        assert (await _call(ctx, name, args)).status == "needs_approval"
        approved = await REGISTRY.run_approved(ctx, name, args)
        assert approved.status == "error" and "not found" in (approved.error or ""), name
    # a context whose chat is another org's: nothing is scheduled or handed off there
    their_chat = await chat_row(db, world.theirs, ids["eve"])
    elsewhere = _ctx(world, chat_id=their_chat, contact_id=None)
    for name, args in (("schedule_followup", {"note": "n", "in_hours": 2}),
                       ("handoff_to_human", {"reason": "r"})):
        outcome = await _call(elsewhere, name, args)
        assert outcome.status == "error" and outcome.error == "chat not found", name
    async with db.system_tx() as conn:
        their = await conn.fetchrow("SELECT metadata FROM chats WHERE id = $1::uuid", their_chat)
        assert not await conn.fetchval(
            "SELECT count(*) FROM agent_followups WHERE chat_id = $1::uuid", their_chat)
    assert "handoff" not in (their["metadata"] or {})
    # memory: saved in our org, never recalled from theirs
    saved = await _call(ctx, "save_memory", {"content": "Alice prefers calls on Fridays"})
    assert saved.status == "ok" and saved.result is not None and saved.result["saved"] is True
    recalled = await _call(ctx, "search_memory", {"query": "Fridays"})
    assert [m["content"] for m in (recalled.result or {})["memories"]] == [
        "Alice prefers calls on Fridays"]
    theirs = _ctx(world, org_id=str(world.theirs.id), contact_id=None, chat_id=None)
    assert (await _call(theirs, "search_memory", {"query": "Fridays"})).result == {
        "memories": []}


async def _agent_trail(db: Database, world: World) -> tuple[list[Any], list[Any]]:
    async with db.tenant_tx(world.ours.id) as conn:
        audit = await conn.fetch("SELECT action, agent_id FROM audit_logs"
                                 " WHERE agent_id IS NOT NULL ORDER BY created_at, id")
        events = await conn.fetch("SELECT event_type, agent_id, payload FROM events"
                                  " WHERE agent_id IS NOT NULL ORDER BY seq")
    return list(audit), list(events)


async def test_mutations_write_the_apis_audit_rows_and_events_as_the_agent(
        db: Database) -> None:
    world = await build_world(db)
    ids = world.ids
    ctx = _ctx(world)
    for name, args in (
            ("update_contact", {"fields": {"role": "CTO", "tags": ["warm"]}}),
            ("create_deal", {"name": "Expansion", "value": 1200, "currency": "EUR"}),
            ("move_deal_stage", {"deal_id": ids["alice_deal"], "stage_id": ids["qualified"]}),
            ("add_note", {"body": "wants a demo"}),
            ("schedule_followup", {"note": "ask about the demo", "in_hours": 48}),
            ("handoff_to_human", {"reason": "asks for a person"})):
        outcome = await _call(ctx, name, args)
        assert outcome.status == "ok", (name, outcome)
    audit, events = await _agent_trail(db, world)
    assert [a["action"] for a in audit] == ["contact.update", "deal.create", "deal.update",
                                            "note.create", "followup.create", "chat.handoff"]
    assert [e["event_type"] for e in events] == [
        "contact.updated", "deal.created", "deal.updated", "deal.stage.changed",
        "note.created", "followup.scheduled", "ai.handoff"]
    assert {str(r["agent_id"]) for r in [*audit, *events]} == {world.agent_id}
    moved = next(e for e in events if e["event_type"] == "deal.stage.changed")
    assert moved["payload"]["to_stage_id"] == ids["qualified"]
    async with db.tenant_tx(world.ours.id) as conn:
        contact = await conn.fetchrow("SELECT role, tags FROM contacts WHERE id = $1::uuid",
                                      ids["alice"])
        chat = await conn.fetchrow("SELECT metadata FROM chats WHERE id = $1::uuid",
                                   world.chat_id)
    assert (contact["role"], contact["tags"]) == ("CTO", ["warm"])
    assert chat["metadata"]["handoff"]["reason"] == "asks for a person"
    assert chat["metadata"]["handoff"]["agent_id"] == world.agent_id


async def test_get_contact_shows_company_open_deals_and_notes(db: Database) -> None:
    world = await build_world(db)
    ctx = _ctx(world)
    await _call(ctx, "create_deal", {"name": "Closed one", "stage_id": world.ids["won"]})
    await _call(ctx, "add_note", {"body": "met at the fair"})
    shown = (await _call(ctx, "get_contact", {})).result or {}
    assert shown["contact"]["id"] == uuid.UUID(world.contact_id)
    assert shown["company"]["name"] == "Acme"
    assert [(d["name"], d["stage"]) for d in shown["open_deals"]] == [("alice deal", "Lead")]
    assert shown["notes"] == ["met at the fair"]


async def test_a_held_bulk_change_runs_once_approved(db: Database) -> None:
    world = await build_world(db)
    ctx = _ctx(world)
    args = {"contact_ids": [world.ids["alice"], world.ids["bob"]], "fields": {"tags": ["vip"]}}
    held = await _call(ctx, "update_contact", args)
    assert (held.status, held.reason) == ("needs_approval", "a bulk change (2 records in"
                                          " contact_ids)")
    assert held.arguments == args
    done = await REGISTRY.run_approved(ctx, "update_contact", args)
    assert done.status == "ok"
    assert [c["tags"] for c in (done.result or {})["updated"]] == [["vip"], ["vip"]]


async def test_send_message_goes_to_the_chat_only(db: Database) -> None:
    world = await build_world(db)
    outbox = Outbox()
    ctx = _ctx(world, outbox)
    ok = await _call(ctx, "send_message", {"text": "See you Monday",
                                           "chat_id": world.chat_id,
                                           "contact_id": world.contact_id})
    assert ok.status == "ok" and outbox.sent == ["See you Monday"]
    for args in ({"to": world.ids["alice_email"]}, {"chat_id": world.ids["bob_chat"]},
                 {"contact_id": world.ids["bob"]}):
        held = await _call(ctx, "send_message", {"text": "x", **args})
        assert (held.status, held.reason) == (
            "needs_approval", "a send to someone other than the chat's contact")
    no_chat = await _call(_ctx(world, outbox, chat_id=None), "send_message", {"text": "x"})
    assert no_chat.status == "error" and outbox.sent == ["See you Monday"]


async def test_followups_are_durable_rows(db: Database, settings: Any) -> None:
    world = await build_world(db)
    ctx = _ctx(world)
    at = await _call(ctx, "schedule_followup", {"note": "call back",
                                                "at": "2026-03-05T09:30:00+01:00"})
    rel = await _call(ctx, "schedule_followup", {"note": "nudge", "in_hours": 2})
    assert at.status == rel.status == "ok"
    for bad in ({"note": "n", "at": "2020-01-01T00:00:00Z"},
                {"note": "n", "in_hours": 8760.5}, {"note": "n", "at": "next tuesday"}):
        assert (await _call(ctx, "schedule_followup", bad)).status in ("error", "invalid")
    # another pool (a restarted process) finds them
    async with Database(settings.database_url,
                        settings.app_db_password.get_secret_value()) as fresh:
        async with fresh.tenant_tx(world.ours.id) as conn:
            pending = await followups.of_chat(conn, world.chat_id)
        assert [(f["note"], f["due_at"]) for f in pending] == [
            ("nudge", NOW + timedelta(hours=2)),
            ("call back", datetime(2026, 3, 5, 8, 30, tzinfo=UTC))]
        async with fresh.system_tx() as conn:
            mine = [f for f in await followups.claim_due(conn, datetime(2026, 3, 2, 13, 0,
                                                                        tzinfo=UTC))
                    if f["organization_id"] == world.ours.id]
        assert [f["note"] for f in mine] == ["nudge"]
        async with fresh.system_tx() as conn:  # a claim past its grace is taken again
            again = await followups.claim_due(conn, NOW + timedelta(hours=3, minutes=10),
                                              grace=timedelta(minutes=5))
            assert mine[0]["id"] in {f["id"] for f in again}
            assert await followups.finish(conn, mine[0]["id"], NOW + timedelta(hours=4))
            assert not await followups.finish(conn, mine[0]["id"], NOW + timedelta(hours=4))
        async with fresh.tenant_tx(world.ours.id) as conn:
            cancelled = await followups.cancel(conn, world.actor(), pending[1]["id"])
            assert cancelled["status"] == "cancelled"
            assert await followups.of_chat(conn, world.chat_id) == []
