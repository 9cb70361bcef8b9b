"""Contacts: create, read, list and search, update, delete, bulk tags and
the chunked import. Every mutation writes its audit row and its event in the
caller's transaction (the import opens its own, one per chunk)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, cast
from uuid import UUID

import asyncpg

from core.errors import Conflict, Invalid, NotFound
from storage import rows
from storage.audit import Actor, record
from storage.db import Database, savepoint
from storage.errors import expect, translate
from storage.rows import Conditions, Listing, Window

COLUMNS = ("id, first_name, last_name, role, email, phone, telegram_username, telegram_chat_id,"
           " linkedin_url, whatsapp_phone, coalesce(tags, '{}') AS tags, notes, source,"
           " coalesce(metadata, '{}'::jsonb) AS metadata, company_id, created_at, updated_at")
WRITABLE = ("first_name", "last_name", "role", "email", "phone", "telegram_username",
            "telegram_chat_id", "linkedin_url", "whatsapp_phone", "tags", "notes", "source",
            "metadata", "company_id")

# Rows per import transaction: events are read below the oldest open
# transaction (storage.events), so one long import would hold back every
# organization's realtime events; a chunk commits in well under a second.
IMPORT_CHUNK = 500

expect("uq_contacts_org_email",
       lambda: Conflict("a contact with this email exists", details={"field": "email"}))
# the company went away between the check and the write
expect("contacts_company_id_fkey", lambda: Invalid("company not found", field="company_id"))

class Contact(TypedDict):
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


class RowError(TypedDict):
    row: int  # the line of the row in its file, or whatever the caller numbers rows by
    errors: list[str]


class ImportReport(TypedDict):
    imported: int
    errors: list[RowError]


def as_contact(row: asyncpg.Record) -> Contact:
    return cast(Contact, dict(row))


MAX_SEARCH_WORDS = 5


@dataclass(frozen=True)
class ContactFilters:
    """What a contact list is narrowed by. `q`: words, each matching the start
    of a word of the name, the email (whole or a part), the Telegram
    username, or any digits of the phone."""

    q: str | None = None
    tags: list[str] | None = None  # a contact has each of them
    company_id: UUID | None = None
    source: str | None = None


def search_words(q: str | None) -> list[str]:
    """The words of a search, lower-cased; a contact must match each."""
    if not q:
        return []
    words = q.lower().split()
    if len(words) > MAX_SEARCH_WORDS:
        raise Invalid(f"search with at most {MAX_SEARCH_WORDS} words", field="q")
    return words


def prefix_end(word: str) -> str | None:
    """The least string after every string that starts with `word` (byte-wise,
    as text_pattern_ops compares: UTF-8 keeps code point order)."""
    last = ord(word[-1]) + 1
    if last == 0xD800:  # surrogates cannot be stored; skip them
        last = 0xE000
    if last > 0x10FFFF:
        return None
    return word[:-1] + chr(last)


def _term_range(word: str, cond: Conditions) -> str:
    """A prefix range on contact_terms (migration 006): leakproof, so
    indexed under RLS."""
    bounds = f"term ~>=~ {cond.param(word)}"
    high = prefix_end(word)
    if high is not None:
        bounds += f" AND term ~<~ {cond.param(high)}"
    return bounds


@dataclass(frozen=True, slots=True)
class _PageQuery:
    window: Window
    sql: str  # the page, each row with the count of the whole list
    args: list[Any]
    cond: Conditions  # the list's WHERE alone, to count past the last page
    search: bool


def _page_query(filters: ContactFilters, window: Window) -> _PageQuery:
    cond = Conditions()
    words = search_words(filters.q)
    first = _term_range(words[0], cond) if words else None
    for word in words[1:]:
        cond.add(f"id IN (SELECT contact_id FROM contact_terms WHERE {_term_range(word, cond)})")
    if filters.tags:
        cond.add(f"tags @> {cond.param(filters.tags)}::text[]")
    cond.equal(company_id=filters.company_id, source=filters.source or None)
    paging, args = cond.paging(window)
    if first is None:
        sql = (f"SELECT {COLUMNS}, count(*) OVER () AS total FROM contacts{cond.where()}"
               f" ORDER BY created_at DESC, id{paging}")
        return _PageQuery(window, sql, args, cond, search=False)
    # Driven by the first word's matches, each contact fetched by its id
    # (OFFSET 0 keeps that join a nested loop whatever the estimates): one
    # plan serves every search, so it is planned once per connection, not
    # per run (bench/api.py: Postgres CPU per search 0.39 -> 0.20 ms).
    narrow = "".join(f" AND {part}" for part in cond.parts)
    sql = (f"SELECT c.*, count(*) OVER () AS total FROM"
           f" (SELECT DISTINCT contact_id FROM contact_terms WHERE {first}) hit"
           f" CROSS JOIN LATERAL (SELECT {COLUMNS} FROM contacts"
           f" WHERE id = hit.contact_id{narrow} OFFSET 0) c"
           f" ORDER BY c.created_at DESC, c.id{paging}")
    cond.parts.insert(0, f"id IN (SELECT contact_id FROM contact_terms WHERE {first})")
    return _PageQuery(window, sql, args, cond, search=True)


async def _run(conn: asyncpg.Connection, query: _PageQuery) -> Listing[Contact]:
    # one scan: the page and the total together
    found = await conn.fetch(query.sql, *query.args)
    if found:
        total = found[0]["total"]
    else:  # past the last page
        total = await conn.fetchval(f"SELECT count(*) FROM contacts{query.cond.where()}",
                                    *query.cond.args)
    data = [{k: v for k, v in r.items() if k != "total"} for r in found]
    return Listing(query.window.page, query.window.limit, total, cast("list[Contact]", data))


async def page(conn: asyncpg.Connection, filters: ContactFilters,
               window: Window) -> Listing[Contact]:
    """One page of the contacts matching `filters`, newest first, and their count."""
    return await _run(conn, _page_query(filters, window))


async def read_page(db: Database, org_id: str, filters: ContactFilters, window: Window, *,
                    user_id: str | None = None) -> Listing[Contact]:
    """`page` in a transaction of its own: three round trips (a fourth counts
    past the last page), and for a search a plan made once per connection.
    `user_id`: the signed-in user the transaction runs as (None for an API
    key, an agent or a job)."""
    query = _page_query(filters, window)
    async with db.tenant_tx(org_id, user_id, generic_plans=query.search) as conn:
        return await _run(conn, query)


async def get(conn: asyncpg.Connection, contact_id: UUID) -> Contact:
    return as_contact(await rows.get_one(conn, "contacts", COLUMNS, "contact", contact_id))


async def _check_company(conn: asyncpg.Connection, company_id: UUID | None) -> None:
    # Foreign keys do not see row-level security: check the tenant owns it.
    if company_id is not None and not await conn.fetchval(
            "SELECT 1 FROM companies WHERE id = $1", company_id):
        raise Invalid("company not found", field="company_id")


def _values(fields: Mapping[str, Any]) -> dict[str, Any]:
    values = rows.writable(fields, WRITABLE)
    if values.get("tags") is not None:
        values["tags"] = sorted(set(values["tags"]))
    return values


async def _insert(conn: asyncpg.Connection, actor: Actor,
                  values: dict[str, Any]) -> asyncpg.Record:
    await _check_company(conn, values.get("company_id"))
    return rows.one(await conn.fetchrow(
        rows.insert_sql("contacts", ["organization_id", *values], COLUMNS), UUID(actor.org_id),
        *values.values()), "INSERT INTO contacts")


async def _created(conn: asyncpg.Connection, actor: Actor, values: dict[str, Any],
                   row: asyncpg.Record) -> Contact:
    contact = as_contact(row)
    await record(conn, actor, action="contact.create", resource_type="contact",
                 resource_id=row["id"], changes=values, event_type="contact.created",
                 payload=dict(contact))
    return contact


async def create(conn: asyncpg.Connection, actor: Actor, fields: Mapping[str, Any]) -> Contact:
    """A contact from `fields` (columns of WRITABLE; None values are left
    out). An email is unique in the org (case-insensitively): `Conflict`."""
    values = {k: v for k, v in _values(fields).items() if v is not None}
    return await _created(conn, actor, values, await _insert(conn, actor, values))


async def update(conn: asyncpg.Connection, actor: Actor, contact_id: UUID,
                 fields: Mapping[str, Any]) -> Contact:
    """Set `fields` (None clears a column); the audit row and
    `contact.updated` name what changed."""
    values = _values(fields)
    before = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM contacts WHERE id = $1 FOR UPDATE", contact_id)
    if before is None:
        raise NotFound("contact not found")
    if not values:
        return as_contact(before)
    await _check_company(conn, values.get("company_id"))
    row = rows.one(await conn.fetchrow(  # `before` is locked FOR UPDATE
        f"UPDATE contacts SET {rows.set_sql(values)}, updated_at = now() WHERE id = $1"
        f" RETURNING {COLUMNS}", contact_id, *values.values()), "UPDATE contacts")
    changes = {k: [before[k], row[k]] for k in values if before[k] != row[k]}
    await record(conn, actor, action="contact.update", resource_type="contact",
                 resource_id=contact_id, changes=changes, event_type="contact.updated",
                 payload={"id": contact_id, "changes": changes})
    return as_contact(row)


async def delete(conn: asyncpg.Connection, actor: Actor, contact_id: UUID) -> None:
    """Its chats and notes go with it; its deals stay, without the contact."""
    await rows.delete_one(conn, actor, "contacts", "contact", contact_id)


async def bulk_tag(conn: asyncpg.Connection, actor: Actor, contact_ids: Sequence[UUID],
                   add: Sequence[str] = (), remove: Sequence[str] = ()) -> int:
    """Add and remove tags on each of the contacts (ids of other orgs and
    unknown ids are skipped); how many were updated, each with its audit row
    and `contact.updated`."""
    if not add and not remove:
        raise Invalid("give tags to add or remove", field="add")
    add, remove = list(add), list(remove)
    updated = await conn.fetch(
        "UPDATE contacts SET tags = ARRAY(SELECT DISTINCT t FROM unnest("
        " array_cat(coalesce(tags, '{}'), $2::text[])) t WHERE NOT t = ANY($3::text[])"
        " ORDER BY t), updated_at = now() WHERE id = ANY($1::uuid[]) RETURNING id",
        list(contact_ids), add, remove)
    for row in updated:
        await record(conn, actor, action="contact.tag", resource_type="contact",
                     resource_id=row["id"], changes={"add": add, "remove": remove},
                     event_type="contact.updated",
                     payload={"id": row["id"], "tags_added": add, "tags_removed": remove})
    return len(updated)


async def import_rows(db: Database, actor: Actor, numbered: Sequence[tuple[int, Mapping[str, Any]]],
                      *, user_id: str | None = None) -> ImportReport:
    """Create a contact from each `(number, fields)`, IMPORT_CHUNK rows per
    transaction (each chunk with its audit rows and events); a row the
    database refuses (a duplicate email, an unknown company) is reported by
    its number and the others are stored. A chunk that fails otherwise ends
    the import; the chunks before it stay committed."""
    report = ImportReport(imported=0, errors=[])
    for start in range(0, len(numbered), IMPORT_CHUNK):
        async with db.tenant_tx(actor.org_id, user_id) as conn:
            for number, fields in numbered[start:start + IMPORT_CHUNK]:
                await _import_row(conn, actor, number, fields, report)
    return report


async def _import_row(conn: asyncpg.Connection, actor: Actor, number: int,
                      fields: Mapping[str, Any], report: ImportReport) -> None:
    try:
        values = {k: v for k, v in _values(fields).items() if v is not None}
        async with savepoint(conn):  # a bad row fails alone
            try:
                row = await _insert(conn, actor, values)
            except asyncpg.IntegrityConstraintViolationError as exc:
                # as tenant_tx would translate it, but for this row alone
                raise translate(exc) from exc
    except (Conflict, Invalid) as exc:
        report["errors"].append(RowError(row=number, errors=[exc.message]))
        return
    report["imported"] += 1
    await _created(conn, actor, values, row)
