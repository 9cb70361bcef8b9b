"""AI agents (`ai_agents`) and their runs (`agent_executions`).

An agent is stored as the API gave it, already checked by the caller (its
prompt template's variables, its tools against the registry, its
guardrails: agents.prompts, agents.toolbox, agents.guardrails); each change
writes its audit row and event. A run is recorded once it ends, whatever
its end (success, error, blocked), with `ai.agent.triggered` in the same
transaction, so the executions list and the event stream agree."""
from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import asyncpg

from core.errors import NotFound
from storage.audit import Actor, record
from storage.committer import Write
from storage.rows import insert_sql, one, set_sql, writable

COLUMNS = ("id, name, type, description, prompt_template, model, temperature::float8 AS"
           " temperature, max_tokens, tools, guardrails, provider, is_active, created_at,"
           " updated_at")
FIELDS = ("name", "type", "description", "prompt_template", "model", "temperature",
          "max_tokens", "tools", "guardrails", "provider", "is_active")
EXECUTION_COLUMNS = ("id, agent_id, chat_id, trigger_event, input_data, output_data, status,"
                     " error_message, tokens_used, execution_time_ms, provider, created_at")


def _agent(row: asyncpg.Record) -> dict[str, Any]:
    found = dict(row)
    found["tools"] = list(found.get("tools") or [])
    found["guardrails"] = found.get("guardrails") or {}
    return found


async def create(conn: asyncpg.Connection, actor: Actor,
                 fields: Mapping[str, Any]) -> dict[str, Any]:
    values = writable(fields, FIELDS, not_null=("name", "type", "prompt_template"))
    names = ["organization_id", *values]
    row = one(await conn.fetchrow(insert_sql("ai_agents", names, COLUMNS),
                                  UUID(actor.org_id), *values.values()), "INSERT INTO ai_agents")
    agent = _agent(row)
    await record(conn, actor, action="agent.create", resource_type="agent",
                 resource_id=row["id"], changes=_loggable(values), event_type="agent.created",
                 payload={"id": row["id"], "name": agent["name"], "type": agent["type"]})
    return agent


def _loggable(values: Mapping[str, Any]) -> dict[str, Any]:
    # the prompt can be long: the audit row says it changed, not all of it
    return {k: (f"{len(v)} characters" if k == "prompt_template" else v)
            for k, v in values.items()}


async def page(conn: asyncpg.Connection, limit: int,
               offset: int) -> tuple[int, list[dict[str, Any]]]:
    total = await conn.fetchval("SELECT count(*) FROM ai_agents")
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM ai_agents ORDER BY created_at DESC, id"
                            " LIMIT $1 OFFSET $2", limit, offset)
    return int(total), [_agent(r) for r in rows]


async def get(conn: asyncpg.Connection, agent_id: UUID | str) -> dict[str, Any]:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM ai_agents WHERE id = $1::uuid",
                              str(agent_id))
    if row is None:
        raise NotFound("agent not found")
    return _agent(row)


async def exists(conn: asyncpg.Connection, agent_id: UUID | str) -> bool:
    """Whether `agent_id` is an agent of this org (row-level security)."""
    return bool(await conn.fetchval("SELECT 1 FROM ai_agents WHERE id = $1::uuid",
                                    str(agent_id)))


async def update(conn: asyncpg.Connection, actor: Actor, agent_id: UUID,
                 changes: Mapping[str, Any]) -> dict[str, Any]:
    values = writable(changes, FIELDS, not_null=("name", "type", "prompt_template"))
    if not values:
        return await get(conn, agent_id)
    row = await conn.fetchrow(
        f"UPDATE ai_agents SET {set_sql(values)}, updated_at = now() WHERE id = $1"
        f" RETURNING {COLUMNS}", agent_id, *values.values())
    if row is None:
        raise NotFound("agent not found")
    await record(conn, actor, action="agent.update", resource_type="agent",
                 resource_id=agent_id, changes=_loggable(values), event_type="agent.updated",
                 payload={"id": agent_id, **{k: v for k, v in values.items()
                                             if k != "prompt_template"}})
    return _agent(row)


async def delete(conn: asyncpg.Connection, actor: Actor, agent_id: UUID) -> None:
    if await conn.fetchval("DELETE FROM ai_agents WHERE id = $1 RETURNING id", agent_id) is None:
        raise NotFound("agent not found")
    await record(conn, actor, action="agent.delete", resource_type="agent",
                 resource_id=agent_id, changes=None, event_type="agent.deleted",
                 payload={"id": agent_id})


INSERT_EXECUTION = f"""
WITH x AS (
  INSERT INTO agent_executions (id, organization_id, agent_id, chat_id, trigger_event,
                                input_data, output_data, status, error_message, tokens_used,
                                execution_time_ms, provider)
  VALUES (coalesce($12, gen_random_uuid()), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
  RETURNING {EXECUTION_COLUMNS}),
e AS (
  INSERT INTO events (organization_id, event_type, entity_type, entity_id, chat_id, agent_id,
                      payload)
  SELECT $1, 'ai.agent.triggered', 'agent_execution', x.id, $3, $2,
         jsonb_build_object('id', x.id, 'agent_id', $2::uuid, 'chat_id', $3::uuid,
                            'trigger', $4::text, 'status', $7::text, 'tokens', $9::int,
                            'ms', $10::int, 'provider', $11::text, 'error', $8::text) FROM x)
SELECT * FROM x
"""


def _execution_args(org_id: str, agent_id: str, chat_id: str | None, trigger: str,
                    input_data: Any, output_data: Any, status: str, error: str | None,
                    tokens: int, ms: int, provider: str,
                    execution_id: str | None) -> tuple[Any, ...]:
    return (UUID(org_id), UUID(agent_id), UUID(chat_id) if chat_id else None, trigger,
            json.loads(json.dumps(input_data, default=str)),
            json.loads(json.dumps(output_data, default=str)), status,
            error[:2000] if error else None, tokens, ms, provider,
            UUID(execution_id) if execution_id else None)


async def record_execution(conn: asyncpg.Connection, org_id: str, agent_id: str,
                           chat_id: str | None, *, trigger: str, input_data: Any,
                           output_data: Any, status: str, error: str | None, tokens: int,
                           ms: int, provider: str) -> dict[str, Any]:
    """A finished run, with its `ai.agent.triggered` event."""
    row = one(await conn.fetchrow(INSERT_EXECUTION, *_execution_args(
        org_id, agent_id, chat_id, trigger, input_data, output_data, status, error, tokens, ms,
        provider, None)), "INSERT INTO agent_executions")
    return dict(row)


def execution_write(org_id: str, agent_id: str, chat_id: str | None, *, trigger: str,
                    input_data: Any, output_data: Any, status: str, error: str | None,
                    tokens: int, ms: int, provider: str) -> tuple[str, Write]:
    """The same as a write for the group committer (its id made here): a
    run's record shares a transaction with other turns' writes."""
    execution_id = str(uuid.uuid4())
    return execution_id, Write(INSERT_EXECUTION, _execution_args(
        org_id, agent_id, chat_id, trigger, input_data, output_data, status, error, tokens, ms,
        provider, execution_id))


async def executions(conn: asyncpg.Connection, agent_id: UUID, limit: int,
                     offset: int) -> tuple[int, list[dict[str, Any]]]:
    """The agent's runs, newest first (404 for an agent not in this org)."""
    await get(conn, agent_id)
    total = await conn.fetchval("SELECT count(*) FROM agent_executions WHERE agent_id = $1",
                                agent_id)
    rows = await conn.fetch(f"SELECT {EXECUTION_COLUMNS} FROM agent_executions"
                            " WHERE agent_id = $1 ORDER BY created_at DESC, id"
                            " LIMIT $2 OFFSET $3", agent_id, limit, offset)
    return int(total), [dict(r) for r in rows]


async def tokens_today(conn: asyncpg.Connection) -> int:
    """Tokens the org's agents used since midnight UTC (its daily quota's count)."""
    return int(await conn.fetchval(
        "SELECT coalesce(sum(tokens_used), 0) FROM agent_executions"
        " WHERE created_at >= date_trunc('day', now() AT TIME ZONE 'UTC')"))


async def agent_sends_today(conn: asyncpg.Connection, contact_id: str) -> int:
    """Messages agents sent (or queued) to the contact since midnight UTC,
    over all their chats: the cap of messages per contact per day counts them."""
    return int(await conn.fetchval(
        "SELECT count(*) FROM messages m JOIN chats c ON c.id = m.chat_id"
        " WHERE c.contact_id = $1::uuid AND m.sender_type = 'agent' AND NOT m.is_incoming"
        " AND m.status IN ('pending', 'sent', 'delivered', 'read')"
        " AND m.created_at >= date_trunc('day', now() AT TIME ZONE 'UTC')", contact_id))


# What an agent's prompt is rendered from, in one round trip: the org's
# name, the contact, their company and their most recent deal with its stage.
FACTS = """
SELECT (SELECT name FROM organizations WHERE id = bidi_org()) AS org_name,
       (SELECT to_jsonb(c) FROM contacts c WHERE c.id = $1::uuid) AS contact,
       (SELECT to_jsonb(co) FROM companies co JOIN contacts c ON c.company_id = co.id
         WHERE c.id = $1::uuid) AS company,
       (SELECT to_jsonb(d) || jsonb_build_object('stage', s.name) FROM deals d
          LEFT JOIN pipeline_stages s ON s.id = d.stage_id
         WHERE d.contact_id = $1::uuid ORDER BY d.updated_at DESC LIMIT 1) AS deal,
       EXISTS (SELECT 1 FROM agent_memories m
                WHERE $1::uuid IS NULL OR m.contact_id = $1::uuid) AS memories
"""


async def prompt_facts(conn: asyncpg.Connection, contact_id: str | None) -> dict[str, Any]:
    """{org, contact, company, deal} for a prompt (None where there is none),
    and whether there are memories to search (of the contact, or the org's)."""
    row = await conn.fetchrow(FACTS, contact_id)
    assert row is not None
    return {"org": {"name": row["org_name"]}, "contact": row["contact"],
            "company": row["company"], "deal": row["deal"], "memories": row["memories"]}


# The follow-up trigger: `deal.stage.changed` events after a position (a
# person's moves only: an agent's own move triggers nothing, or agents would
# answer each other), with the deal's contact's latest chat and the org's
# active follow-up agents.
DEAL_MOVES = """
SELECT e.seq, e.organization_id, e.entity_id AS deal_id,
       (SELECT c.id FROM chats c JOIN deals d ON d.contact_id = c.contact_id
         WHERE d.id = e.entity_id ORDER BY c.last_message_at DESC NULLS LAST LIMIT 1) AS chat_id,
       (SELECT coalesce(array_agg(a.id::text ORDER BY a.id), '{}') FROM ai_agents a
         WHERE a.organization_id = e.organization_id AND a.type = 'followup'
           AND a.is_active) AS agents
FROM events e
WHERE e.event_type = 'deal.stage.changed' AND e.seq > $1 AND e.agent_id IS NULL
ORDER BY e.seq LIMIT $2
"""


async def trigger_position(conn: asyncpg.Connection, name: str) -> int:
    """Where the trigger `name` has read the event stream up to; the first
    time, the stream's end (what happened before is not replayed)."""
    found = await conn.fetchval("SELECT position FROM agent_trigger_cursors WHERE name = $1",
                                name)
    if found is not None:
        return int(found)
    end = int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM events"))
    await conn.execute("INSERT INTO agent_trigger_cursors (name, position) VALUES ($1, $2)"
                       " ON CONFLICT (name) DO NOTHING", name, end)
    return end


async def move_trigger(conn: asyncpg.Connection, name: str, position: int) -> None:
    await conn.execute("UPDATE agent_trigger_cursors SET position = greatest(position, $2),"
                       " updated_at = now() WHERE name = $1", name, position)


async def deal_moves(conn: asyncpg.Connection, after: int,
                     limit: int) -> tuple[int, list[dict[str, Any]]]:
    """(the last seq read, the moves after `after` with a chat and agents to
    run); a system transaction: across orgs."""
    rows = await conn.fetch(DEAL_MOVES, after, limit)
    last = max([after, *(int(r["seq"]) for r in rows)])
    return last, [dict(r) for r in rows if r["chat_id"] is not None and r["agents"]]


# A held tool call, claimed for a decision: its pending entry gets the
# decision, once (a second claim finds it decided and changes nothing).
CLAIM_PENDING = """
UPDATE agent_executions SET output_data = jsonb_set(output_data, ARRAY['pending', i::text],
         (output_data->'pending'->i) || $4::jsonb)
FROM (SELECT (ordinality - 1)::int AS i FROM agent_executions x,
             jsonb_array_elements(x.output_data->'pending') WITH ORDINALITY
       WHERE x.id = $1 AND x.agent_id = $2 AND value->>'call_id' = $3
         AND NOT value ? 'decision') found
WHERE id = $1 AND agent_id = $2
RETURNING chat_id, output_data->'pending'->found.i AS held
"""


async def claim_pending(conn: asyncpg.Connection, agent_id: UUID, execution_id: UUID,
                        call_id: str, decision: Mapping[str, Any]) -> dict[str, Any] | None:
    """Mark the held call `call_id` of the run decided (`decision`); answers
    {chat_id, held} or None when there is no such undecided call."""
    row = await conn.fetchrow(CLAIM_PENDING, execution_id, agent_id, call_id, dict(decision))
    return None if row is None else {"chat_id": row["chat_id"], "held": row["held"]}


async def settle_pending(conn: asyncpg.Connection, execution_id: UUID, call_id: str,
                         outcome: Mapping[str, Any]) -> None:
    """Keep what running an approved call did beside its decision."""
    await conn.execute(
        "UPDATE agent_executions SET output_data = jsonb_set(output_data,"
        " ARRAY['pending', i::text, 'outcome'], $3::jsonb)"
        " FROM (SELECT (ordinality - 1)::int AS i FROM agent_executions x,"
        "   jsonb_array_elements(x.output_data->'pending') WITH ORDINALITY"
        "   WHERE x.id = $1 AND value->>'call_id' = $2) found WHERE id = $1",
        execution_id, call_id, dict(outcome))


async def pending_calls(conn: asyncpg.Connection, agent_id: UUID) -> list[dict[str, Any]]:
    """The agent's held tool calls not decided yet, newest run first."""
    await get(conn, agent_id)
    rows = await conn.fetch(
        "SELECT x.id AS execution_id, x.chat_id, x.created_at, p.value AS held"
        " FROM agent_executions x, jsonb_array_elements(x.output_data->'pending') p"
        " WHERE x.agent_id = $1 AND jsonb_typeof(x.output_data->'pending') = 'array'"
        " AND NOT p.value ? 'decision' ORDER BY x.created_at DESC LIMIT 200", agent_id)
    return [{"execution_id": r["execution_id"], "chat_id": r["chat_id"],
             "created_at": r["created_at"], **dict(r["held"])} for r in rows]
