"""`GET /v1/events?since=<seq>`: the organization's events after one it has
seen, in commit order (the order the relay publishes and WebSockets deliver),
committed ones only. Page on with `next_since`. Only the events whose data the
caller may read are listed (`core.rbac.event_permission`): a key with
`crm:read` sees contacts and deals, not message text."""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from core.errors import Invalid
from core.rbac import event_families
from serve.auth import Principal, require, runtime_of
from storage import events

router = APIRouter(prefix="/v1/events", tags=["events"])


class EventOut(BaseModel):
    type: str = Field(description='always "event"')
    seq: int
    xid: int = Field(description="Commit-order key (the writing transaction)")
    event_type: str
    organization_id: UUID
    entity_type: str | None
    entity_id: UUID | None
    chat_id: UUID | None
    user_id: UUID | None
    created_at: datetime | None
    data: Any


class EventPage(BaseModel):
    limit: int
    next_since: int = Field(description="Pass as `since` for the next page")
    data: list[EventOut]


@router.get("", response_model=EventPage)
async def list_events(request: Request,
                      since: int = Query(0, ge=0, le=2**62,
                                         description="The seq of the last event you have"),
                      limit: int = Query(100, ge=1, le=1000),
                      principal: Principal = Depends(require("org:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        start = await events.position_of(conn, since)
        if start is None:
            raise Invalid(f"since={since} is not an event of this organization", field="since")
        batch = await events.read_tenant(conn, start, limit,
                                         families=event_families(principal.permissions))
    next_since = batch[-1].seq if batch else since
    body = (b'{"limit":%d,"next_since":%d,"data":[' % (limit, next_since)
            + b",".join(e.frame for e in batch) + b"]}")
    return Response(body, media_type="application/json")
