"""Follow-ups an agent scheduled on a chat: durable rows (migration 018), so
a restart loses none.

A follow-up is `pending` until its time; a scheduler claims the due ones
across organizations (`claim_due`, in a system transaction) by marking them
`running` with the claim's time, runs the agent, and marks each `done`. A
claim older than its grace counts as lost (the host that took it died) and
is claimed again: a follow-up runs at least once, never silently dropped.
Scheduling and cancelling write their audit rows and events in the
caller's tenant transaction, like every other mutation."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, TypedDict, cast
from uuid import UUID

import asyncpg

from core.errors import Invalid, NotFound
from storage.audit import Actor, record
from storage.rows import one

COLUMNS = ("id, organization_id, agent_id, chat_id, contact_id, due_at, note, status,"
           " claimed_at, done_at, created_at")
MAX_NOTE = 2000
Status = Literal["pending", "running", "done", "cancelled"]


class Followup(TypedDict):
    id: UUID
    organization_id: UUID
    agent_id: UUID
    chat_id: UUID | None
    contact_id: UUID | None
    due_at: datetime
    note: str
    status: Status
    claimed_at: datetime | None
    done_at: datetime | None
    created_at: datetime


def _followup(row: asyncpg.Record) -> Followup:
    return cast(Followup, dict(row))


async def schedule(conn: asyncpg.Connection, actor: Actor, *, agent_id: str,
                   chat_id: str | None, contact_id: str | None, due_at: datetime,
                   note: str) -> Followup:
    """A pending follow-up, with its audit row and `followup.scheduled`. The
    chat and contact must be the tenant's (foreign keys do not see RLS)."""
    if not note.strip():
        raise Invalid("a follow-up needs a note", field="note")
    if len(note) > MAX_NOTE:
        raise Invalid(f"a follow-up note has at most {MAX_NOTE} characters", field="note")
    for value, table, field in ((chat_id, "chats", "chat_id"),
                                (contact_id, "contacts", "contact_id")):
        if value is not None and not await conn.fetchval(
                f"SELECT 1 FROM {table} WHERE id = $1 FOR KEY SHARE", UUID(value)):
            raise NotFound(f"{field.removesuffix('_id')} not found")
    row = one(await conn.fetchrow(
        f"INSERT INTO agent_followups (organization_id, agent_id, chat_id, contact_id, due_at,"
        f" note) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}",
        UUID(actor.org_id), UUID(agent_id), _uuid(chat_id), _uuid(contact_id), due_at, note),
        "INSERT INTO agent_followups")
    followup = _followup(row)
    await record(conn, actor, action="followup.create", resource_type="followup",
                 resource_id=row["id"], changes={"due_at": due_at, "note": note},
                 event_type="followup.scheduled", payload=dict(followup))
    return followup


async def of_chat(conn: asyncpg.Connection, chat_id: str,
                  statuses: tuple[Status, ...] = ("pending", "running")) -> list[Followup]:
    """The chat's follow-ups in `statuses`, soonest first."""
    found = await conn.fetch(
        f"SELECT {COLUMNS} FROM agent_followups WHERE chat_id = $1 AND status = ANY($2::text[])"
        " ORDER BY due_at, id", UUID(chat_id), list(statuses))
    return [_followup(r) for r in found]


async def cancel(conn: asyncpg.Connection, actor: Actor, followup_id: UUID) -> Followup:
    """A pending follow-up cancelled, with its audit row and `followup.cancelled`."""
    row = await conn.fetchrow(
        f"UPDATE agent_followups SET status = 'cancelled', done_at = now()"
        f" WHERE id = $1 AND status = 'pending' RETURNING {COLUMNS}", followup_id)
    if row is None:
        raise NotFound("pending follow-up not found")
    await record(conn, actor, action="followup.cancel", resource_type="followup",
                 resource_id=followup_id, changes={"status": ["pending", "cancelled"]},
                 event_type="followup.cancelled", payload={"id": followup_id})
    return _followup(row)


async def claim_due(conn: asyncpg.Connection, now: datetime, *, limit: int = 100,
                    grace: timedelta = timedelta(minutes=5)) -> list[Followup]:
    """Claim up to `limit` follow-ups due at `now`, across organizations (a
    system transaction): pending ones, and running ones whose claim is older
    than `grace`. SKIP LOCKED lets two schedulers claim side by side."""
    found = await conn.fetch(
        f"UPDATE agent_followups SET status = 'running', claimed_at = $1"
        f" WHERE id IN (SELECT id FROM agent_followups"
        f"  WHERE due_at <= $1 AND (status = 'pending'"
        f"   OR (status = 'running' AND claimed_at < $2))"
        f"  ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED)"
        f" RETURNING {COLUMNS}", now, now - grace, limit)
    return sorted((_followup(r) for r in found), key=lambda f: (f["due_at"], str(f["id"])))


async def finish(conn: asyncpg.Connection, followup_id: UUID, at: datetime) -> bool:
    """Mark a claimed follow-up done; False when it was not running (cancelled
    or finished meanwhile)."""
    done = await conn.fetchval(
        "UPDATE agent_followups SET status = 'done', done_at = $2"
        " WHERE id = $1 AND status = 'running' RETURNING id", followup_id, at)
    return done is not None


def _uuid(value: str | None) -> UUID | None:
    return UUID(value) if value is not None else None
