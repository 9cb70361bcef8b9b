"""The audit trail and the event log, written in the caller's transaction:
a mutation, its `audit_logs` row and its `events` row commit together; and
the trail read back, newest first."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Actor:
    """Who did it, from where. `agent_id`: the AI agent acting (its tool
    calls), written to the audit row and the event."""

    org_id: str
    user_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    agent_id: str | None = None


async def record(conn: asyncpg.Connection, actor: Actor, *, action: str, resource_type: str,
                 resource_id: Any, changes: dict[str, Any] | None,
                 event_type: str | None = None, payload: dict[str, Any] | None = None) -> int:
    """Write the audit row and (when `event_type`) the event; return the event
    seq. Both rows go in one statement: one round trip per mutation saved."""
    args = (actor.org_id, actor.user_id, action, resource_type, resource_id,
            _jsonable(changes), actor.ip, actor.user_agent, actor.agent_id)
    if event_type is None:
        await conn.execute(f"INSERT INTO audit_logs {_AUDIT}", *args)
        return 0
    return int(await conn.fetchval(
        f"WITH audit AS (INSERT INTO audit_logs {_AUDIT})"
        " INSERT INTO events (organization_id, event_type, entity_type, entity_id, user_id,"
        " agent_id, payload) VALUES ($1, $10, $4, $5, $2, $9, $11) RETURNING seq",
        *args, event_type, _jsonable(payload if payload is not None else (changes or {}))))


_AUDIT = ("(organization_id, user_id, action, resource_type, resource_id, changes, ip_address,"
          " user_agent, agent_id) VALUES ($1, $2, $3, $4, $5, $6, $7::inet, $8, $9)")


async def append_event(conn: asyncpg.Connection, org_id: str, event_type: str,
                       entity_type: str | None, entity_id: Any, payload: dict[str, Any], *,
                       user_id: str | None = None, agent_id: str | None = None) -> int:
    return int(await conn.fetchval(
        "INSERT INTO events (organization_id, event_type, entity_type, entity_id, user_id,"
        " agent_id, payload) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
        org_id, event_type, entity_type, entity_id, user_id, agent_id, _jsonable(payload)))


ENTRY_COLUMNS = ("id, user_id, action, resource_type, resource_id, changes,"
                 " host(ip_address) AS ip_address, user_agent, created_at")


async def entries(conn: asyncpg.Connection, limit: int, offset: int, *,
                  action: str | None = None, resource_type: str | None = None,
                  resource_id: Any = None,
                  user_id: Any = None) -> tuple[int, list[dict[str, Any]]]:
    """The total and one page of the tenant's audit rows matching every
    filter given, newest first."""
    conditions: list[str] = []
    args: list[Any] = []
    for column, value in (("action", action), ("resource_type", resource_type),
                          ("resource_id", resource_id), ("user_id", user_id)):
        if value is not None:
            args.append(value)
            conditions.append(f"{column} = ${len(args)}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    n = len(args)
    total = await conn.fetchval(f"SELECT count(*) FROM audit_logs{where}", *args)
    rows = await conn.fetch(
        f"SELECT {ENTRY_COLUMNS} FROM audit_logs{where} ORDER BY created_at DESC, id"
        f" LIMIT ${n + 1} OFFSET ${n + 2}", *args, limit, offset)
    return int(total), [dict(r) for r in rows]


def _jsonable(value: Any) -> Any:
    """UUIDs, dates and decimals as strings, recursively."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    return str(value)
