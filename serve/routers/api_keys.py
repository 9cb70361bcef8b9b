"""API keys: created (the key is shown once), listed, revoked. Stored as a
SHA-256 hash with a lookup prefix; scoped to a subset of the creator's
permissions; used as `X-API-Key`."""
from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from core.errors import Forbidden, Invalid, NotFound
from core.rbac import ALL_PERMISSIONS
from core.security import digest, opaque_token
from serve.auth import API_KEY_PREFIX, Principal, require, runtime_of
from serve.crud import list_page
from serve.models import Strict
from serve.pagination import Page, PageParams, page_params
from storage.audit import record

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


COLUMNS = "id, name, prefix, scopes, created_at, last_used_at, expires_at, revoked_at"


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_key(body: ApiKeyIn, request: Request,
                     principal: Principal = Depends(require("apikeys:manage"))) -> Any:
    unknown = sorted(set(body.scopes) - ALL_PERMISSIONS)
    if unknown:
        raise Invalid(f"unknown scopes: {', '.join(unknown)}", field="scopes")
    beyond = sorted(set(body.scopes) - principal.permissions)
    if beyond:
        raise Forbidden(f"a key cannot have scopes its creator lacks: {', '.join(beyond)}")
    # A key made with a key belongs to the same person: it lives only as long as
    # their membership and never holds more than their role.
    creator = principal.actor.user_id
    if creator is None:
        raise Forbidden("this key has no creator to make keys for")
    prefix, secret = secrets.token_hex(6), opaque_token(32)
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        row = await conn.fetchrow(
            f"INSERT INTO api_keys (organization_id, created_by, name, prefix, key_hash, scopes,"
            f" expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}",
            UUID(principal.org_id), UUID(creator), body.name,
            prefix, digest(secret), sorted(set(body.scopes)), body.expires_at)
        await record(conn, principal.actor, action="api_key.create", resource_type="api_key",
                     resource_id=row["id"], changes={"name": body.name, "scopes": body.scopes},
                     event_type="api_key.created",
                     payload={"id": row["id"], "name": body.name, "prefix": prefix})
    return {**dict(row), "key": f"{API_KEY_PREFIX}_{prefix}_{secret}"}


@router.get("", response_model=Page[ApiKeyOut])
async def list_keys(request: Request, page: PageParams = Depends(page_params),
                    principal: Principal = Depends(require("apikeys:manage"))) -> Any:
    return await list_page(request, principal, "api_keys", COLUMNS, page)


@router.delete("/{key_id}", status_code=204, response_class=Response)
async def revoke_key(key_id: UUID, request: Request,
                     principal: Principal = Depends(require("apikeys:manage"))) -> Response:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        revoked = await conn.fetchval(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1"
            " RETURNING id", key_id)
        if revoked is None:
            raise NotFound("API key not found")
        await record(conn, principal.actor, action="api_key.revoke", resource_type="api_key",
                     resource_id=key_id, changes=None, event_type="api_key.revoked",
                     payload={"id": key_id})
    return Response(status_code=204)
