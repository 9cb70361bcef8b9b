"""An agent's drafts, decided by a person: approved as written or edited
(then sent through the chat actor like any reply) or rejected. A draft
decided already is a 409, so a double click cannot send twice."""
from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from actors.refs import ChatRef
from actors.runtime.client import ActorSystem
from serve.auth import Principal, require, runtime_of
from serve.models import Strict
from storage import messages

router = APIRouter(prefix="/v1/messages", tags=["drafts"])


class ApproveIn(Strict):
    content: str | None = Field(default=None, min_length=1, max_length=20_000,
                                description="The draft as edited (omit to send it as written)")


class Decided(BaseModel):
    id: UUID
    chat_id: UUID
    status: str = Field(description="pending (queued to send) or rejected")
    content: str


async def decide(actors: ActorSystem, principal: Principal, chat_id: str, message_id: str, *,
                 approve: bool, content: str | None) -> dict[str, Any]:
    """Through the chat actor (shared by these routes and the WebSocket)."""
    return await ChatRef(actors, principal.org_id, chat_id).decide_draft(
        message_id, approve=approve, content=content, user_id=principal.user_id)


async def _chat_of(request: Request, principal: Principal, message_id: UUID) -> str:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await messages.chat_of(conn, message_id)


@router.post("/{message_id}/approve", response_model=Decided)
async def approve(message_id: UUID, request: Request, body: ApproveIn | None = None,
                  principal: Principal = Depends(require("chats:write"))) -> Any:
    chat_id = await _chat_of(request, principal, message_id)
    return await decide(runtime_of(request).actors, principal, chat_id, str(message_id),
                        approve=True, content=body.content if body else None)


@router.post("/{message_id}/reject", response_model=Decided)
async def reject(message_id: UUID, request: Request,
                 principal: Principal = Depends(require("chats:write"))) -> Any:
    chat_id = await _chat_of(request, principal, message_id)
    return await decide(runtime_of(request).actors, principal, chat_id, str(message_id),
                        approve=False, content=None)
