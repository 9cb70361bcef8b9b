"""The audit trail, newest first, filterable."""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from serve.auth import Principal, require, runtime_of
from serve.pagination import Page, PageParams, page_params
from storage import audit

router = APIRouter(prefix="/v1/audit-logs", tags=["audit"])


class AuditOut(BaseModel):
    id: UUID
    user_id: UUID | None
    action: str
    resource_type: str | None
    resource_id: UUID | None
    changes: Any
    ip_address: str | None
    user_agent: str | None
    created_at: datetime | None


@router.get("", response_model=Page[AuditOut])
async def list_audit_logs(
    request: Request,
    page: PageParams = Depends(page_params),
    action: str | None = Query(None, max_length=100),
    resource_type: str | None = Query(None, max_length=100),
    resource_id: UUID | None = None,
    user_id: UUID | None = None,
    principal: Principal = Depends(require("audit:read")),
) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        total, rows = await audit.entries(conn, page.limit, page.offset, action=action,
                                          resource_type=resource_type,
                                          resource_id=resource_id, user_id=user_id)
    return {"page": page.page, "limit": page.limit, "total": total, "data": rows}
