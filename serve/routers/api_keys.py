"""API keys: created (the key is shown once), listed, revoked
(storage.api_keys); used as `X-API-Key: bidi_<prefix>_<secret>`."""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from serve.auth import API_KEY_PREFIX, Principal, require, runtime_of
from serve.models import Strict
from serve.pagination import Page, PageParams, page_params
from storage import api_keys

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])
DEFAULT_SCOPES = ["crm:read", "crm:write", "chats:read", "chats:write"]


class ApiKeyIn(Strict):
    name: str = Field(min_length=1, max_length=255)
    scopes: list[str] = Field(default_factory=lambda: list(DEFAULT_SCOPES), max_length=32)
    expires_at: datetime | None = None


class ApiKeyOut(BaseModel):
    id: UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime | None
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The full key. It is shown this once and never again.")


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_key(body: ApiKeyIn, request: Request,
                     principal: Principal = Depends(require("apikeys:manage"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        made = await api_keys.create(conn, principal.actor, name=body.name, scopes=body.scopes,
                                     allowed=principal.permissions, expires_at=body.expires_at)
    return {**made.key, "key": f"{API_KEY_PREFIX}_{made.key['prefix']}_{made.secret}"}


@router.get("", response_model=Page[ApiKeyOut])
async def list_keys(request: Request, page: PageParams = Depends(page_params),
                    principal: Principal = Depends(require("apikeys:manage"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        total, rows = await api_keys.page(conn, page.limit, page.offset)
    return {"page": page.page, "limit": page.limit, "total": total, "data": rows}


@router.delete("/{key_id}", status_code=204, response_class=Response)
async def revoke_key(key_id: UUID, request: Request,
                     principal: Principal = Depends(require("apikeys:manage"))) -> Response:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        await api_keys.revoke(conn, principal.actor, key_id)
    return Response(status_code=204)
