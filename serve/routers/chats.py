"""Chats and their messages. Reads go to Postgres; writes (send, mark read)
go through the chat's actor, which is the only writer of its messages."""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, Field

from actors.outbound import SERVICE_WINDOW, WINDOWED, aware, now_utc
from actors.refs import ChatRef, SentMessage
from actors.runtime.client import ActorSystem
from core.errors import Invalid
from serve.auth import Principal, require, runtime_of
from serve.models import Strict
from serve.pagination import Page, PageParams, page_params
from storage import agents, chats, messages

router = APIRouter(prefix="/v1/chats", tags=["chats"])


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
    unreachable_reason: str | None = Field(
        default=None, description="Why messages cannot be sent here (e.g. the bot was blocked)")
    unreachable_at: datetime | None = None
    assigned_agent_id: UUID | None = Field(
        default=None, description="The AI agent that answers this chat (PATCH to change)")
    assigned_user_id: UUID | None = Field(
        default=None, description="The member who answers this chat (PATCH to change)")
    last_message: LastMessage | None


class WhatsAppWindow(BaseModel):
    open: bool = Field(description="Whether free text may be sent now (else only a template)")
    closes_at: datetime | None = Field(
        description="When it closes (or closed): 24 hours after the contact's last message;"
                    " null when the contact never wrote")


class ChatDetail(ChatOut):
    whatsapp_window: WhatsAppWindow | None = Field(
        default=None, description="WhatsApp chats: the 24-hour customer service window")


def _window(chat: dict[str, Any]) -> dict[str, Any] | None:
    """The service window of a WhatsApp chat, as its actor checks it on send."""
    if chat["channel"] not in WINDOWED:
        return None
    last = chat["last_inbound_at"]
    if last is None:
        return {"open": False, "closes_at": None}
    closes = aware(last) + SERVICE_WINDOW
    return {"open": now_utc() < closes, "closes_at": closes}


class Revision(BaseModel):
    content: str
    edited_at: datetime


class AttachmentOut(BaseModel):
    id: UUID
    kind: str | None = None
    name: str | None = None
    mime_type: str | None = None
    size: int | None = None
    stored: bool = Field(description="Whether the file is here to download")
    error: str | None = Field(default=None, description="Why it never will be")


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
    edited_at: datetime | None = Field(default=None, description="When it was last edited")
    revisions: list[Revision] = Field(
        default_factory=list, description="Its edits, oldest first; `content` stays as it came")
    attachments: list[AttachmentOut] = Field(
        default_factory=list, description="Files it came with (GET /v1/attachments/{id})")


class MessagePage(BaseModel):
    limit: int
    next_cursor: str | None = Field(description="Pass as `before` for older messages")
    data: list[MessageOut]


class TemplateIn(Strict):
    name: str = Field(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$",
                      description="An approved template of the number's business account")
    language: str = Field(min_length=2, max_length=15, pattern=r"^[A-Za-z]{2,3}(_[A-Za-z0-9]+)?$",
                          description="Its language code, e.g. en_US")
    components: list[dict[str, Any]] = Field(
        default_factory=list, max_length=20,
        description="Header, body and button parameters, as the Cloud API takes them")


class SendIn(Strict):
    content: str | None = Field(default=None, min_length=1, max_length=65_536,
                                description="The text (what the inbox shows for a template)")
    reply_to: UUID | None = Field(
        default=None, description="A message of this chat this one answers (threaded at the"
                                  " provider where it can: Telegram's reply)")
    template: TemplateIn | None = Field(
        default=None, description="WhatsApp: send this template instead of free text (the"
                                  " only kind allowed outside the 24-hour window)")


class Sent(MessageOut):
    duplicate: bool = Field(description="True when the Idempotency-Key was used before")


class ReadOut(BaseModel):
    chat_id: UUID
    unread: int
    changed: bool


@router.get("", response_model=Page[ChatOut])
async def list_chats(request: Request, page: PageParams = Depends(page_params),
                     unread: bool | None = Query(None, description="Only chats with unread"),
                     channel: str | None = Query(None, max_length=50),
                     contact_id: UUID | None = None,
                     q: str | None = Query(
                         None, max_length=200, description="Words, each matching the start"
                         " of a word of the contact's name, email or username, or of the"
                         " chat's title"),
                     assigned_agent_id: UUID | None = None,
                     assigned_user_id: str | None = Query(
                         None, max_length=36, description="A member's id, or `me` (a"
                         " signed-in user only)"),
                     principal: Principal = Depends(require("chats:read"))) -> Any:
    user = _assignee(assigned_user_id, principal)
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        total, rows = await chats.list_page(
            conn, limit=page.limit, offset=page.offset, unread=unread, channel=channel,
            contact_id=contact_id, q=q, assigned_agent_id=assigned_agent_id,
            assigned_user_id=user)
    return {"page": page.page, "limit": page.limit, "total": total, "data": rows}


def _assignee(value: str | None, principal: Principal) -> UUID | None:
    """`?assigned_user_id=`: a user id, or `me` for the signed-in caller."""
    if value is None:
        return None
    if value == "me":
        if principal.user_id is None:
            raise Invalid("an API key is no user: name one by id instead of `me`",
                          field="assigned_user_id")
        return UUID(principal.user_id)
    try:
        return UUID(value)
    except ValueError:
        raise Invalid("a user id or `me`", field="assigned_user_id") from None


@router.get("/{chat_id}", response_model=ChatDetail)
async def get_chat(chat_id: UUID, request: Request,
                   principal: Principal = Depends(require("chats:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        chat = await chats.get(conn, chat_id)
    return {**chat, "whatsapp_window": _window(chat)}


class ChatPatch(Strict):
    """Only the fields present change."""

    assigned_agent_id: UUID | None = Field(
        default=None, description="An agent of this organization to answer the chat (drafts"
                                  " or replies, by its guardrails); null: no agent")
    assigned_user_id: UUID | None = Field(
        default=None, description="A member of this organization to answer the chat (the"
                                  " event `chat.assigned` notifies them); null: nobody")


@router.patch("/{chat_id}", response_model=ChatOut)
async def update_chat(chat_id: UUID, body: ChatPatch, request: Request,
                      principal: Principal = Depends(require("chats:write"))) -> Any:
    """The person is written here; the agent through the chat's actor (its
    only writer of the agent). Both are checked before either changes."""
    fields = body.model_fields_set
    if not fields:
        raise Invalid("nothing to change: give assigned_user_id and/or assigned_agent_id")
    runtime = runtime_of(request)
    agent = str(body.assigned_agent_id) if body.assigned_agent_id else None
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        await chats.get(conn, chat_id)  # another org's chat: 404 before any change
        if agent is not None and not await agents.exists(conn, agent):
            raise Invalid("no such agent in this organization", field="assigned_agent_id")
        if "assigned_user_id" in fields:
            await chats.assign_user(conn, principal.actor, chat_id, body.assigned_user_id)
    if "assigned_agent_id" in fields:
        await ChatRef(runtime.actors, principal.org_id, str(chat_id)).assign(
            agent, principal.user_id)
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await chats.get(conn, chat_id)


@router.get("/{chat_id}/messages", response_model=MessagePage)
async def list_messages(chat_id: UUID, request: Request,
                        before: str | None = Query(None, max_length=200),
                        limit: int = Query(50, ge=1, le=200),
                        principal: Principal = Depends(require("chats:read"))) -> Any:
    """Newest first; `next_cursor` pages to older messages."""
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await messages.history(conn, chat_id, limit=limit, before=before)


@router.post("/{chat_id}/messages", status_code=202, response_model=Sent)
async def send_message(chat_id: UUID, body: SendIn, request: Request,
                       idempotency_key: str | None = Header(
                           None, max_length=255, description="Retries with the same key send"
                           " once and answer the same message"),
                       principal: Principal = Depends(require("chats:write"))) -> Any:
    """Persisted as `pending` and sent through the chat's channel; the status
    then moves to `sent` or `failed` (events `message.sent`,
    `message.status.updated`)."""
    template = body.template.model_dump() if body.template is not None else None
    content = body.content
    if content is None:
        if template is None:
            raise Invalid("a message needs content (or a template)", field="content")
        content = f"[template {template['name']} ({template['language']})]"
    if "\x00" in content or (idempotency_key and "\x00" in idempotency_key):
        raise Invalid("text contains a NUL character", field="content")
    return await send(runtime_of(request).actors, principal, chat_id, content,
                      idempotency_key, body.reply_to, template)


async def send(actors: ActorSystem, principal: Principal, chat_id: UUID | str, content: str,
               idempotency_key: str | None, reply_to: UUID | None = None,
               template: dict[str, Any] | None = None) -> SentMessage:
    """Through the chat actor (shared by this route and WebSocket `message.send`)."""
    chat = ChatRef(actors, principal.org_id, str(chat_id))
    return await chat.send(content, principal.user_id, idempotency_key,
                           reply_to=str(reply_to) if reply_to else None, template=template)


@router.post("/{chat_id}/read", response_model=ReadOut)
async def mark_read(chat_id: UUID, request: Request,
                    principal: Principal = Depends(require("chats:write"))) -> Any:
    """Unread goes to 0 and `chat.read` is emitted (when anything was unread)."""
    chat = ChatRef(runtime_of(request).actors, principal.org_id, str(chat_id))
    return await chat.mark_read(principal.user_id)
