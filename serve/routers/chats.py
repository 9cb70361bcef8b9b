"""Chats and their messages. Reads go to Postgres; writes (send, mark read)
go through the chat's actor, which is the only writer of its messages."""
from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, Field

from actors.refs import ChatRef, SentMessage
from actors.runtime.client import ActorSystem
from core.errors import Invalid, NotFound
from serve.auth import Principal, require, runtime_of
from serve.crud import Conditions
from serve.models import Strict
from serve.pagination import Page, PageParams, page_params

router = APIRouter(prefix="/v1/chats", tags=["chats"])

CHAT_COLUMNS = """
c.id, c.contact_id, c.channel, c.channel_thread_id, c.integration_id, c.title, c.is_unread,
c.unread_count, c.last_message_at, c.last_inbound_at, c.created_at, c.updated_at,
nullif(trim(coalesce(ct.first_name, '') || ' ' || coalesce(ct.last_name, '')), '')
  AS contact_name,
(SELECT to_jsonb(l) FROM (
   SELECT m.id, m.content, m.is_incoming, m.sender_type, m.status, m.created_at
   FROM messages m WHERE m.chat_id = c.id ORDER BY m.created_at DESC, m.id DESC LIMIT 1) l)
  AS last_message
"""
MESSAGE_COLUMNS = ("id, chat_id, sender_type, sender_id, content, is_incoming, is_read,"
                   " ai_draft, ai_agent_id, status, external_id, metadata, created_at")


class LastMessage(BaseModel):
    id: UUID
    content: str
    is_incoming: bool
    sender_type: str
    status: str
    created_at: datetime | None


class ChatOut(BaseModel):
    id: UUID
    contact_id: UUID | None
    contact_name: str | None
    channel: str
    channel_thread_id: str | None
    integration_id: UUID | None
    title: str | None
    is_unread: bool | None
    unread_count: int
    last_message_at: datetime | None
    last_inbound_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None
    last_message: LastMessage | None


class MessageOut(BaseModel):
    id: UUID
    chat_id: UUID
    sender_type: str
    sender_id: UUID | None
    content: str
    is_incoming: bool
    is_read: bool | None
    ai_draft: bool | None = False
    ai_agent_id: UUID | None = None
    status: str
    external_id: str | None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None


class MessagePage(BaseModel):
    limit: int
    next_cursor: str | None = Field(description="Pass as `before` for older messages")
    data: list[MessageOut]


class SendIn(Strict):
    content: str = Field(min_length=1, max_length=65_536)


class Sent(MessageOut):
    duplicate: bool = Field(description="True when the Idempotency-Key was used before")


class ReadOut(BaseModel):
    chat_id: UUID
    unread: int
    changed: bool


def _cursor(created_at: datetime, message_id: UUID) -> str:
    raw = f"{created_at.isoformat()}|{message_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _uncursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, ident = raw.partition("|")
        return datetime.fromisoformat(stamp), UUID(ident)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid("before is not a cursor from this API", field="before") from None


@router.get("", response_model=Page[ChatOut])
async def list_chats(request: Request, page: PageParams = Depends(page_params),
                     unread: bool | None = Query(None, description="Only chats with unread"),
                     channel: str | None = Query(None, max_length=50),
                     contact_id: UUID | None = None,
                     principal: Principal = Depends(require("chats:read"))) -> Any:
    cond = Conditions()
    if unread is not None:
        cond.add("c.unread_count > 0" if unread else "c.unread_count = 0")
    cond.equal(**{"c.channel": channel or None, "c.contact_id": contact_id})
    paging, args = cond.paging(page)
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM chats c{cond.where()}", *cond.args)
        rows = await conn.fetch(
            f"SELECT {CHAT_COLUMNS} FROM chats c LEFT JOIN contacts ct ON ct.id = c.contact_id"
            f"{cond.where()} ORDER BY c.last_message_at DESC NULLS LAST, c.id{paging}", *args)
    return {"page": page.page, "limit": page.limit, "total": total,
            "data": [dict(r) for r in rows]}


@router.get("/{chat_id}", response_model=ChatOut)
async def get_chat(chat_id: UUID, request: Request,
                   principal: Principal = Depends(require("chats:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        row = await conn.fetchrow(
            f"SELECT {CHAT_COLUMNS} FROM chats c LEFT JOIN contacts ct ON ct.id = c.contact_id"
            " WHERE c.id = $1", chat_id)
    if row is None:
        raise NotFound("chat not found")
    return dict(row)


@router.get("/{chat_id}/messages", response_model=MessagePage)
async def list_messages(chat_id: UUID, request: Request,
                        before: str | None = Query(None, max_length=200),
                        limit: int = Query(50, ge=1, le=200),
                        principal: Principal = Depends(require("chats:read"))) -> Any:
    """Newest first; `next_cursor` pages to older messages."""
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        if not await conn.fetchval("SELECT 1 FROM chats WHERE id = $1", chat_id):
            raise NotFound("chat not found")
        if before:
            stamp, ident = _uncursor(before)
            rows = await conn.fetch(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = $1"
                " AND (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT $4",
                chat_id, stamp, ident, limit + 1)
        else:
            rows = await conn.fetch(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = $1"
                " ORDER BY created_at DESC, id DESC LIMIT $2", chat_id, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
    data = [{**dict(r), "metadata": r["metadata"] or {}} for r in rows]
    return {"limit": limit, "next_cursor": next_cursor, "data": data}


@router.post("/{chat_id}/messages", status_code=202, response_model=Sent)
async def send_message(chat_id: UUID, body: SendIn, request: Request,
                       idempotency_key: str | None = Header(
                           None, max_length=255, description="Retries with the same key send"
                           " once and answer the same message"),
                       principal: Principal = Depends(require("chats:write"))) -> Any:
    """Persisted as `pending` and sent through the chat's channel; the status
    then moves to `sent` or `failed` (events `message.sent`,
    `message.status.updated`)."""
    if "\x00" in body.content or (idempotency_key and "\x00" in idempotency_key):
        raise Invalid("text contains a NUL character", field="content")
    return await send(runtime_of(request).actors, principal, chat_id, body.content,
                      idempotency_key)


async def send(actors: ActorSystem, principal: Principal, chat_id: UUID | str, content: str,
               idempotency_key: str | None) -> SentMessage:
    """Through the chat actor (shared by this route and WebSocket `message.send`)."""
    chat = ChatRef(actors, principal.org_id, str(chat_id))
    return await chat.send(content, principal.user_id, idempotency_key)


@router.post("/{chat_id}/read", response_model=ReadOut)
async def mark_read(chat_id: UUID, request: Request,
                    principal: Principal = Depends(require("chats:write"))) -> Any:
    """Unread goes to 0 and `chat.read` is emitted (when anything was unread)."""
    chat = ChatRef(runtime_of(request).actors, principal.org_id, str(chat_id))
    return await chat.mark_read(principal.user_id)
