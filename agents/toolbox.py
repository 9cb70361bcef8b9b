"""The eleven tools an agent can be given, each a thin adapter from
validated arguments to the same storage/ functions the API calls, so a tool
mutation writes the API's audit row and event (attributed to the agent by
`ctx.actor.agent_id`).

What a tool may touch without a human is the chat in front of it: writes
default to the chat's contact, and naming any other contact (or a list of
more than one, or another recipient for a message) turns the call into a
pending approval instead (agents.tools). Reads range over the org, which
row-level security bounds: another org's id is "not found". There is no
delete tool. Reads return a few fields and at most 20 rows, so no single
call can page out the contact list."""
from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from agents.tools import UUID as ID
from agents.tools import Registry, Tool, ToolContext
from core.errors import Invalid
from storage import chats, companies, contacts, deals, followups, notes, pipelines
from storage.contacts import ContactFilters
from storage.deals import DealFilters
from storage.rows import Page

OTHER_CONTACT = "a change to another contact"
OTHER_RECIPIENT = "a send to someone other than the chat's contact"
CLOSED_WORDS = ("won", "lost", "closed")  # a stage so named ends a deal
MEMORY_TYPES = ["fact", "preference", "summary", "note"]
MAX_FOLLOWUP = timedelta(days=365)


def _text(most: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": most}


def _object(properties: dict[str, Any], *required: str, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False, **extra}


def _brief(c: Any) -> dict[str, Any]:
    return {k: c.get(k) for k in ("id", "first_name", "last_name", "email", "phone", "role",
                                  "tags", "company_id")}


def _targets(ctx: ToolContext, args: dict[str, Any]) -> list[str]:
    """The contacts a write names; the chat's contact when it names none."""
    named = list(args.get("contact_ids") or [])
    if args.get("contact_id"):
        named.append(args["contact_id"])
    if not named and ctx.contact_id:
        named.append(ctx.contact_id)
    if not named:
        raise Invalid("this chat has no contact: name one", field="contact_id")
    return [str(UUID(c)) for c in dict.fromkeys(named)]


def _other_contact(ctx: ToolContext, args: dict[str, Any]) -> str | None:
    named = list(args.get("contact_ids") or []) + [args.get("contact_id")]
    mine = str(UUID(ctx.contact_id)) if ctx.contact_id else None
    others = {str(UUID(c)) for c in named if c} - {mine}
    return OTHER_CONTACT if others else None


# -- reads ----------------------------------------------------------------

async def search_contacts(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    found = await contacts.page(ctx.conn, ContactFilters(q=args["query"]),
                                Page(1, args.get("limit", 10)))
    return {"total": found.total, "contacts": [_brief(c) for c in found.data]}


async def get_contact(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    [contact_id] = _targets(ctx, {"contact_id": args.get("contact_id")})
    contact = await contacts.get(ctx.conn, UUID(contact_id))
    company = None
    if contact["company_id"] is not None:
        row: dict[str, Any] = dict(await companies.get(ctx.conn, contact["company_id"]))
        company = {k: row[k] for k in ("id", "name", "industry", "size", "website")}
    listed = await deals.page(ctx.conn, DealFilters(contact_id=UUID(contact_id)), Page(1, 20))
    stages: dict[Any, str] = {}
    for pipeline_id in {d["pipeline_id"] for d in listed.data if d["pipeline_id"]}:
        for step in (await pipelines.get(ctx.conn, pipeline_id))["stages"]:
            stages[step["id"]] = step["name"]
    open_deals = []
    for d in listed.data:
        stage = stages.get(d["stage_id"], "")
        if not any(word in stage.lower() for word in CLOSED_WORDS):
            open_deals.append({"id": d["id"], "name": d["name"], "stage": stage,
                               "stage_id": d["stage_id"], "value": d["value"],
                               "currency": d["currency"]})
    recent_notes = (await notes.of(ctx.conn, "contact", UUID(contact_id)))[-10:]
    return {"contact": {**_brief(contact), "notes": contact["notes"]}, "company": company,
            "open_deals": open_deals, "notes": [n["body"] for n in recent_notes]}


async def search_memory(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    found = await ctx.memory.recall(ctx.org_id, args["query"], contact_id=ctx.contact_id,
                                    limit=args.get("limit", 5))
    return {"memories": [_memory(m) for m in found]}


def _memory(m: Any) -> dict[str, Any]:
    """A memory as the model reads it, whatever record type the store returns."""
    fields = m if isinstance(m, dict) else {k: getattr(m, k, None) for k in _MEMORY_FIELDS}
    return {k: fields.get(k) for k in _MEMORY_FIELDS if fields.get(k) is not None}


_MEMORY_FIELDS = ("id", "memory_type", "content", "contact_id")


# -- writes ---------------------------------------------------------------

CONTACT_FIELDS = {
    "first_name": _text(100), "last_name": _text(100), "role": _text(100),
    "email": {"type": "string", "maxLength": 254, "pattern": "^[^@\\s]+@[^@\\s]+$"},
    "phone": {"type": "string", "maxLength": 40, "pattern": "^[0-9+()\\-. ]{3,40}$"},
    "linkedin_url": {"type": "string", "maxLength": 300, "pattern": "^https://"},
    "notes": _text(5000), "company_id": ID,
    "tags": {"type": "array", "maxItems": 20, "items": _text(50)},
}


async def update_contact(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    fields = dict(args["fields"])
    if "company_id" in fields:
        fields["company_id"] = UUID(fields["company_id"])
    updated = [await contacts.update(ctx.conn, ctx.actor, UUID(c), fields)
               for c in _targets(ctx, args)]
    return {"updated": [_brief(c) for c in updated]}


async def create_deal(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    pipeline_id = args.get("pipeline_id")
    if pipeline_id is None:
        listed = (await pipelines.page(ctx.conn, Page(1, 100))).data
        default = next((p for p in listed if p["is_default"]), listed[0] if listed else None)
        if default is None:
            raise Invalid("the org has no pipeline", field="pipeline_id")
        pipeline_id = str(default["id"])
    [contact_id] = _targets(ctx, {"contact_id": args.get("contact_id")})
    fields: dict[str, Any] = {"name": args["name"], "pipeline_id": UUID(pipeline_id),
                              "contact_id": UUID(contact_id)}
    for key in ("value", "currency"):
        if key in args:
            fields[key] = args[key]
    if args.get("stage_id"):
        fields["stage_id"] = UUID(args["stage_id"])
    if args.get("expected_close_date"):
        try:
            fields["expected_close_date"] = date.fromisoformat(args["expected_close_date"])
        except ValueError:
            raise Invalid("expected_close_date is YYYY-MM-DD",
                          field="expected_close_date") from None
    deal: dict[str, Any] = dict(await deals.create(ctx.conn, ctx.actor, fields))
    return {"deal": {k: deal[k] for k in ("id", "name", "pipeline_id", "stage_id", "value",
                                          "currency", "contact_id")}}


async def move_deal_stage(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    deal = await deals.move_stage(ctx.conn, ctx.actor, UUID(args["deal_id"]),
                                  UUID(args["stage_id"]))
    return {"deal": {"id": deal["id"], "stage_id": deal["stage_id"], "name": deal["name"]}}


async def add_note(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("deal_id"):
        note = await notes.add(ctx.conn, ctx.actor, "deal", UUID(args["deal_id"]), args["body"])
    else:
        [contact_id] = _targets(ctx, {"contact_id": args.get("contact_id")})
        note = await notes.add(ctx.conn, ctx.actor, "contact", UUID(contact_id), args["body"])
    return {"note": {"id": note["id"], "contact_id": note["contact_id"],
                     "deal_id": note["deal_id"]}}


async def schedule_followup(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    now = ctx.now()
    if "in_hours" in args:
        due = now + timedelta(hours=args["in_hours"])
    else:
        try:
            due = datetime.fromisoformat(args["at"])
        except ValueError:
            raise Invalid("at is an ISO 8601 date and time", field="at") from None
        due = due if due.tzinfo is not None else due.replace(tzinfo=UTC)
    if not now < due <= now + MAX_FOLLOWUP:
        raise Invalid("a follow-up is due in the future, within a year", field="at")
    followup = await followups.schedule(
        ctx.conn, ctx.actor, agent_id=ctx.agent_id, chat_id=ctx.chat_id,
        contact_id=ctx.contact_id, due_at=due, note=args["note"])
    return {"followup": {"id": followup["id"], "due_at": due.isoformat()}}


async def save_memory(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    memory, created = await ctx.memory.remember(
        ctx.org_id, ctx.actor, agent_id=ctx.agent_id, contact_id=ctx.contact_id,
        memory_type=args.get("memory_type", "fact"), content=args["content"])
    return {"saved": created, "memory": _memory(memory)}


async def send_message(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    if ctx.chat_id is None:
        raise Invalid("this run has no chat to send to", field="chat_id")
    return {"sent": True, "receipt": await ctx.send(args["text"])}


def _other_recipient(ctx: ToolContext, args: dict[str, Any]) -> str | None:
    """Naming any recipient is a send elsewhere, unless it is this chat or its contact."""
    if args.get("to"):
        return OTHER_RECIPIENT
    if args.get("chat_id") and (ctx.chat_id is None or UUID(args["chat_id"]) != UUID(ctx.chat_id)):
        return OTHER_RECIPIENT
    if args.get("contact_id") and _other_contact(ctx, {"contact_id": args["contact_id"]}):
        return OTHER_RECIPIENT
    return None


async def handoff_to_human(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    if ctx.chat_id is None:
        raise Invalid("this run has no chat to hand off", field="chat_id")
    handoff = await chats.mark_handoff(ctx.conn, ctx.actor, ctx.chat_id, args["reason"],
                                       ctx.now())
    return {"handoff": True, "at": handoff["at"]}


TOOLS: tuple[Tool, ...] = (
    Tool("search_contacts", "Find contacts of the CRM by name, email, username or phone digits"
         " (at most 20).", _object({"query": _text(200),
                                    "limit": {"type": "integer", "minimum": 1, "maximum": 20}},
                                   "query"), search_contacts),
    Tool("get_contact", "The chat's contact (or the one named): details, company, open deals"
         " with their stage, and recent notes.", _object({"contact_id": ID}), get_contact),
    Tool("update_contact", "Correct fields of the chat's contact.", _object(
        {"contact_id": ID, "contact_ids": {"type": "array", "items": ID, "maxItems": 100},
         "fields": _object(CONTACT_FIELDS, minProperties=1)}, "fields"),
         update_contact, mutates=True, approval=_other_contact),
    Tool("create_deal", "Open a deal for the chat's contact, in the default pipeline unless"
         " one is named.", _object(
             {"name": _text(255), "value": {"type": "number", "minimum": 0, "maximum": 1e10},
              "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}, "pipeline_id": ID,
              "stage_id": ID, "contact_id": ID,
              "expected_close_date": {"type": "string", "pattern": "^\\d{4}-\\d{2}-\\d{2}$"}},
             "name"), create_deal, mutates=True, approval=_other_contact),
    Tool("move_deal_stage", "Move a deal to another stage of its pipeline.",
         _object({"deal_id": ID, "stage_id": ID}, "deal_id", "stage_id"), move_deal_stage,
         mutates=True),
    Tool("add_note", "Add a note to the chat's contact, or to a deal.",
         _object({"body": _text(5000), "deal_id": ID, "contact_id": ID}, "body"), add_note,
         mutates=True, approval=_other_contact),
    Tool("schedule_followup", "Come back to this chat later: in some hours, or at a time.",
         _object({"note": _text(2000),
                  "in_hours": {"type": "number", "exclusiveMinimum": 0, "maximum": 8760},
                  "at": {"type": "string", "maxLength": 40}}, "note",
                 oneOf=[{"required": ["in_hours"]}, {"required": ["at"]}]),
         schedule_followup, mutates=True),
    Tool("search_memory", "Recall what was learnt about this contact before.",
         _object({"query": _text(500), "limit": {"type": "integer", "minimum": 1,
                                                 "maximum": 10}}, "query"),
         search_memory, transaction=False),
    Tool("save_memory", "Remember a fact or preference of this contact for later chats.",
         _object({"content": _text(1000), "memory_type": {"enum": MEMORY_TYPES}}, "content"),
         save_memory, mutates=True, transaction=False),
    Tool("send_message", "Send a message to the chat's contact.",
         _object({"text": _text(4000), "to": {"type": "string", "maxLength": 320},
                  "contact_id": ID, "chat_id": ID}, "text"),
         send_message, mutates=True, approval=_other_recipient, transaction=False,
         outbound=lambda args: str(args["text"])),
    Tool("handoff_to_human", "Hand this chat to a person of the team, saying why.",
         _object({"reason": _text(500)}, "reason"), handoff_to_human, mutates=True),
)


@functools.cache
def registry() -> Registry:
    """The registry of every tool; an agent's allow-list picks among them.
    Made once per process: checking the schemas and compiling their
    validators took a third of an actor host's time when made per run
    (bench/agents.py)."""
    return Registry(TOOLS)
