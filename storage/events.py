"""Reading the event log in commit order.

An event's position is `(xid, seq)`: the id of the transaction that wrote it,
then its seq. Events are read only below the commit fence
`pg_snapshot_xmin(pg_current_snapshot())` (every transaction with a smaller
id has finished), so a reader that has passed position P never sees a new
event appear before P. The relay, `GET /v1/events` and WebSocket resume all
read through here; clients name a position by an event's `seq`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

Position = tuple[int, int]  # (xid, seq)
NOTIFY_CHANNEL = "bidi_events"  # what writers NOTIFY at commit to wake the relay
START: Position = (0, 0)

COLUMNS = ("xid::text::bigint AS xid, seq, organization_id, event_type, entity_type, entity_id,"
           " chat_id, user_id, agent_id, payload::text AS payload, created_at")
FENCE = "xid < pg_snapshot_xmin(pg_current_snapshot())"
AFTER = "(xid, seq) > ($1::text::xid8, $2::bigint)"
ORDER = " ORDER BY events.xid, events.seq LIMIT $3"  # the table's columns: the index order

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Event:
    xid: int
    seq: int
    org_id: str
    chat_id: str | None
    event_type: str
    payload: dict[str, Any] | None
    frame: bytes  # the WebSocket frame, encoded once
    created_at: datetime | None = None

    @property
    def position(self) -> Position:
        return (self.xid, self.seq)


def from_row(row: asyncpg.Record) -> Event:
    chat_id = str(row["chat_id"]) if row["chat_id"] else None
    head = _encode({
        "type": "event", "seq": row["seq"], "xid": row["xid"], "event_type": row["event_type"],
        "organization_id": str(row["organization_id"]), "entity_type": row["entity_type"],
        "entity_id": str(row["entity_id"]) if row["entity_id"] else None, "chat_id": chat_id,
        "user_id": str(row["user_id"]) if row["user_id"] else None,
        "created_at": row["created_at"].isoformat() if row["created_at"] else None})
    frame = head[:-1] + b',"data":' + row["payload"].encode() + b"}"
    return Event(row["xid"], row["seq"], str(row["organization_id"]), chat_id,
                 row["event_type"], None, frame, row["created_at"])


def parse_frame(frame: bytes) -> Event:
    """A frame published by the relay, back to its routing fields."""
    data = msgspec.json.decode(frame)
    return Event(int(data["xid"]), int(data["seq"]), data["organization_id"],
                 data.get("chat_id"), data["event_type"], data.get("data"), frame)


async def read_all(conn: asyncpg.Connection, after: Position,
                   limit: int) -> tuple[list[Event], bool]:
    """Every org's committed events after `after` (the relay; owner role),
    and whether committed events wait behind the fence. One query: the rows
    after `after` in position order, each marked below the fence or not;
    those below come first (their xids are smaller), and reading stops at
    the first that is not."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS}, {FENCE} AS settled FROM events WHERE {AFTER}{ORDER}",
        str(after[0]), after[1], limit)
    found: list[Event] = []
    for row in rows:
        if not row["settled"]:
            return found, True
        found.append(from_row(row))
    return found, False


def _tenant_query(after: Position, chat_ids: Sequence[str] | None,
                  families: Sequence[str] | None) -> tuple[str, list[Any]]:
    """The WHERE of one org's committed events after `after`, and its
    arguments ($3 is left for the limit)."""
    where = ("organization_id = bidi_org()" if chat_ids is None
             else "chat_id = ANY($4::uuid[])")
    args: list[Any] = [str(after[0]), after[1], None]
    if chat_ids is not None:
        args.append(list(chat_ids))
    if families is not None:
        args.append(list(families))
        where += f" AND split_part(event_type, '.', 1) = ANY(${len(args)}::text[])"
    return f"{where} AND {AFTER} AND {FENCE}", args


async def read_tenant(conn: asyncpg.Connection, after: Position, limit: int,
                      chat_ids: Sequence[str] | None = None,
                      families: Sequence[str] | None = None) -> list[Event]:
    """One org's committed events after `after` (RLS scopes the org), optionally
    only those of some chats, and only of the event families the reader may
    see (`core.rbac.event_families`; None: every family)."""
    where, args = _tenant_query(after, chat_ids, families)
    args[2] = limit
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM events WHERE {where}{ORDER}", *args)
    return [from_row(r) for r in rows]


async def count_tenant(conn: asyncpg.Connection, after: Position, cap: int,
                       chat_ids: Sequence[str] | None = None,
                       families: Sequence[str] | None = None) -> int:
    """How many events `read_tenant` would find, counting no further than `cap`."""
    where, args = _tenant_query(after, chat_ids, families)
    args[2] = cap
    return int(await conn.fetchval(
        f"SELECT count(*) FROM (SELECT 1 FROM events WHERE {where}{ORDER}) AS behind", *args))


async def position_of(conn: asyncpg.Connection, seq: int) -> Position | None:
    """The position of the caller's event `seq` (None when it is not theirs)."""
    if seq <= 0:
        return START
    row = await conn.fetchrow("SELECT xid::text::bigint AS xid FROM events WHERE seq = $1", seq)
    return None if row is None else (int(row["xid"]), seq)
