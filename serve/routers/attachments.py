"""The files messages came with: `GET /v1/attachments/{id}` serves one once
its chat has fetched it into the data dir (a 404 names why it is not there:
not fetched yet, or never: too large, gone)."""
from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from core.errors import NotFound
from serve.auth import Principal, require, runtime_of
from storage import messages

router = APIRouter(prefix="/v1/attachments", tags=["chats"])


@router.get("/{attachment_id}", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}}, 404: {}})
async def get_attachment(attachment_id: UUID, request: Request,
                         principal: Principal = Depends(require("chats:read"))) -> Any:
    runtime = runtime_of(request)
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        found = await messages.attachment(conn, attachment_id)
    if found["stored_at"] is None:
        why = found["error"] or "the file has not been fetched yet"
        raise NotFound(f"no file for this attachment: {why}")
    root = (Path(runtime.settings.data_dir) / "files").resolve()
    path = (Path(runtime.settings.data_dir) / found["file_url"]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFound("no file for this attachment: it is gone from the data dir")
    return FileResponse(path, media_type=found["file_type"] or "application/octet-stream",
                        filename=found["file_name"] or path.name)
