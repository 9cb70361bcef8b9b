"""Contacts: CRUD with filters, free-text search and pagination, bulk tags,
CSV import with a per-row report, and notes, over `storage.contacts` and
`storage.notes` (the rules, audit rows and events). The CSV is read and each
row validated here; storage stores the valid rows chunk by chunk."""
from __future__ import annotations

import csv
import io
import itertools
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, Field, ValidationError

from actors.refs import ChatRef
from core.errors import Invalid
from serve.auth import Principal, require, runtime_of
from serve.models import NoteIn, NoteOut, Strict
from serve.pagination import Page, PageParams, page_params
from storage import contact_merge, contacts, notes
from storage.contacts import IMPORT_CHUNK as IMPORT_CHUNK  # rows per import transaction
from storage.contacts import ContactFilters
from storage.db import Database

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])
MAX_IMPORT_ROWS = 10_000
Tag = Field(min_length=1, max_length=64)


class ContactFields(Strict):
    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    role: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=255,
                              pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, max_length=50)
    telegram_username: str | None = Field(default=None, max_length=100)
    telegram_chat_id: int | None = None
    linkedin_url: str | None = Field(default=None, max_length=2048)
    whatsapp_phone: str | None = Field(default=None, max_length=50)
    tags: list[str] | None = Field(default=None, max_length=100)
    notes: str | None = Field(default=None, max_length=100_000)
    source: str | None = Field(default=None, max_length=100)
    metadata: dict[str, Any] | None = None
    company_id: UUID | None = None


class ContactIn(ContactFields):
    source: str | None = Field(default="manual", max_length=100)


class ContactOut(BaseModel):
    id: UUID
    first_name: str | None
    last_name: str | None
    role: str | None
    email: str | None
    phone: str | None
    telegram_username: str | None
    telegram_chat_id: int | None
    linkedin_url: str | None
    whatsapp_phone: str | None
    tags: list[str]
    notes: str | None
    source: str | None
    metadata: dict[str, Any]
    company_id: UUID | None
    created_at: datetime | None
    updated_at: datetime | None


class BulkTagIn(Strict):
    contact_ids: list[UUID] = Field(min_length=1, max_length=1000)
    add: list[str] = Field(default_factory=list, max_length=50)
    remove: list[str] = Field(default_factory=list, max_length=50)


class BulkTagOut(BaseModel):
    updated: int


class ImportRowError(BaseModel):
    row: int
    errors: list[str]


class ImportOut(BaseModel):
    imported: int
    failed: int
    errors: list[ImportRowError]


WRITABLE = list(ContactFields.model_fields)
Q_MAX, TAGS_MAX, SOURCE_MAX = 200, 20, 100
_encode = msgspec.json.Encoder().encode


@router.get("", response_model=Page[ContactOut])
async def list_contacts(
    request: Request,
    page: PageParams = Depends(page_params),
    q: str | None = Query(None, max_length=Q_MAX, description=(
        "Words, each matching the start of a word of the name, the email (whole or"
        " a part), the Telegram username, or any digits of the phone")),
    tag: list[str] | None = Query(None, max_length=TAGS_MAX),
    company_id: UUID | None = None,
    source: str | None = Query(None, max_length=SOURCE_MAX),
    principal: Principal = Depends(require("crm:read")),
) -> Any:
    """Also served by `serve.fastpath` (the same `contact_page`)."""
    return await contact_page(runtime_of(request).db, principal,
                              ContactFilters(q, tag, company_id, source), page)


async def contact_page(db: Database, principal: Principal, filters: ContactFilters,
                       page: PageParams) -> Response:
    """The page encoded straight from the rows (msgspec): validating and
    serializing 50 rows with pydantic cost more than the query."""
    found = await contacts.read_page(db, principal.org_id, filters, page,
                                     user_id=principal.user_id)
    return Response(_encode(found), media_type="application/json")


@router.post("", status_code=201, response_model=ContactOut)
async def create_contact(body: ContactIn, request: Request,
                         principal: Principal = Depends(require("crm:write"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await contacts.create(conn, principal.actor, body.model_dump(exclude_none=True))


@router.get("/{contact_id}", response_model=ContactOut)
async def get_contact(contact_id: UUID, request: Request,
                      principal: Principal = Depends(require("crm:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await contacts.get(conn, contact_id)


@router.patch("/{contact_id}", response_model=ContactOut)
async def update_contact(contact_id: UUID, body: ContactFields, request: Request,
                         principal: Principal = Depends(require("crm:write"))) -> Any:
    fields = {k: getattr(body, k) for k in body.model_fields_set}
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await contacts.update(conn, principal.actor, contact_id, fields)


class MergeIn(Strict):
    into: UUID = Field(description="The contact that remains")


@router.post("/{contact_id}/merge", response_model=ContactOut)
async def merge_contact(contact_id: UUID, body: MergeIn, request: Request,
                        principal: Principal = Depends(require("crm:write"))) -> Any:
    """Merge this contact into `into` (one person on two channels): its chats,
    messages, deals, notes and memories move, `into` takes the fields it
    lacked, and this contact's id names `into` from then on."""
    runtime = runtime_of(request)
    async with runtime.db.tenant_tx(principal.org_id, principal.user_id) as conn:
        kept, chat_ids = await contact_merge.merge(conn, principal.actor, contact_id, body.into)
    for chat_id in chat_ids:  # resident chats drop the contacts they cached
        await ChatRef(runtime.actors, principal.org_id, chat_id).reload()
    return kept


@router.delete("/{contact_id}", status_code=204, response_class=Response)
async def delete_contact(contact_id: UUID, request: Request,
                         principal: Principal = Depends(require("crm:write"))) -> Response:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        await contacts.delete(conn, principal.actor, contact_id)
    return Response(status_code=204)


@router.post("/bulk-tag", response_model=BulkTagOut)
async def bulk_tag(body: BulkTagIn, request: Request,
                   principal: Principal = Depends(require("crm:write"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        updated = await contacts.bulk_tag(conn, principal.actor, body.contact_ids, body.add,
                                          body.remove)
    return {"updated": updated}


@router.post("/import", response_model=ImportOut,
             openapi_extra={"requestBody": {"content": {"text/csv": {
                 "schema": {"type": "string"}}}, "required": True}})
async def import_csv(request: Request,
                     principal: Principal = Depends(require("crm:write"))) -> Any:
    """CSV with a header row naming contact fields (`tags` separated by `;`).
    Valid rows are stored; every other row is reported with its errors.
    Rows are committed `IMPORT_CHUNK` at a time, each chunk with its audit
    rows and events."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid("the CSV must be UTF-8") from None
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(itertools.islice(reader, MAX_IMPORT_ROWS + 1))
    except csv.Error as exc:
        raise Invalid(f"malformed CSV: {exc}") from None
    unknown = sorted(set(reader.fieldnames or []) - set(WRITABLE) - {""})
    if not reader.fieldnames or unknown:
        raise Invalid(f"unknown columns: {', '.join(unknown)}" if unknown
                      else "the CSV needs a header row", details={"allowed": WRITABLE})
    if len(rows) > MAX_IMPORT_ROWS:
        raise Invalid(f"at most {MAX_IMPORT_ROWS} rows per import")
    errors: list[contacts.RowError] = []
    valid: list[tuple[int, dict[str, Any]]] = []
    for number, row in enumerate(rows, start=2):
        try:
            valid.append((number, _import_row(row).model_dump(exclude_none=True)))
        except ValidationError as exc:
            errors.append(contacts.RowError(row=number, errors=[
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]))
    report = await contacts.import_rows(runtime_of(request).db, principal.actor, valid,
                                        user_id=principal.user_id)
    errors += report["errors"]
    errors.sort(key=lambda e: e["row"])
    return {"imported": report["imported"], "failed": len(errors), "errors": errors}


def _import_row(row: dict[str, Any]) -> ContactIn:
    cells: dict[str, Any] = {k: v.strip() for k, v in row.items()
                             if k and isinstance(v, str) and v.strip()}
    if "tags" in cells:
        cells["tags"] = [t.strip() for t in cells["tags"].split(";") if t.strip()]
    return ContactIn.model_validate({"source": "import", **cells})


@router.get("/{contact_id}/notes", response_model=list[NoteOut])
async def notes_of_contact(contact_id: UUID, request: Request,
                           principal: Principal = Depends(require("crm:read"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await notes.of(conn, "contact", contact_id)


@router.post("/{contact_id}/notes", status_code=201, response_model=NoteOut)
async def note_on_contact(contact_id: UUID, request: Request, body: NoteIn = Body(...),
                          principal: Principal = Depends(require("crm:write"))) -> Any:
    async with runtime_of(request).db.tenant_tx(principal.org_id, principal.user_id) as conn:
        return await notes.add(conn, principal.actor, "contact", contact_id, body.body)
