"""Statements every tenant table shares: one row by id, a delete with its
audit row and event, a page of rows, an INSERT or UPDATE over the columns a
caller sets, and a list's WHERE clause built with its numbered parameters.

Table, column and resource names are the calling module's constants, never
input: only values travel as parameters."""
from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

import asyncpg

from core.errors import Invalid, NotFound
from storage.audit import Actor, record

T = TypeVar("T")


class Window(Protocol):
    """Which page of a list: `serve.pagination.PageParams` is one."""

    @property
    def page(self) -> int: ...

    @property
    def limit(self) -> int: ...

    @property
    def offset(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Page:
    """A `Window` for callers outside the API (agent tools, jobs, tests)."""

    page: int = 1
    limit: int = 20

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """One page of a list and the count of the whole list. msgspec encodes it
    as the API's `{"page","limit","total","data"}` as it is."""

    page: int
    limit: int
    total: int
    data: list[T]

    def as_dict(self) -> dict[str, Any]:
        return {"page": self.page, "limit": self.limit, "total": self.total, "data": self.data}


def listing(window: Window, total: int, data: list[T]) -> Listing[T]:
    return Listing(window.page, window.limit, total, data)


class Conditions:
    """A list's WHERE clause, built up with its numbered parameters; the page's
    LIMIT and OFFSET come after them."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.args: list[Any] = []

    def param(self, value: Any) -> str:
        """A placeholder for `value`."""
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, condition: str) -> None:
        self.parts.append(condition)

    def equal(self, **columns: Any) -> None:
        """`column = value` for each value that is not None."""
        for column, value in columns.items():
            if value is not None:
                self.add(f"{column} = {self.param(value)}")

    def where(self) -> str:
        return f" WHERE {' AND '.join(self.parts)}" if self.parts else ""

    def paging(self, page: Window) -> tuple[str, list[Any]]:
        """`LIMIT .. OFFSET ..` and every argument of the statement."""
        n = len(self.args)
        return f" LIMIT ${n + 1} OFFSET ${n + 2}", [*self.args, page.limit, page.offset]


def escape_like(text: str) -> str:
    """`text` matched literally inside a LIKE pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def insert_sql(table: str, names: Sequence[str], returning: str) -> str:
    """`INSERT INTO table (names) VALUES ($1..$n) RETURNING returning`."""
    params = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({params}) RETURNING {returning}"


def set_sql(names: Iterable[str], first: int = 2) -> str:
    """`a = $2, b = $3, ...`: the SET list of an UPDATE whose $1 is the id."""
    return ", ".join(f"{name} = ${i}" for i, name in enumerate(names, first))


def writable(fields: Mapping[str, Any], allowed: Collection[str],
             not_null: Collection[str] = ()) -> dict[str, Any]:
    """`fields` if each names a column the caller may set (names end up in the
    statement's text) and none of `not_null` is set to None."""
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise Invalid(f"unknown fields: {', '.join(unknown)}", field=unknown[0],
                      details={"allowed": sorted(allowed)})
    for name in not_null:
        if name in fields and fields[name] is None:
            raise Invalid(f"{name} cannot be null", field=name)
    return dict(fields)


def one(row: asyncpg.Record | None, statement: str) -> asyncpg.Record:
    """The row of a statement that always returns one (an INSERT .. RETURNING,
    an aggregate, an UPDATE of a row known to exist); `statement` names it."""
    if row is None:
        raise RuntimeError(f"{statement} returned no row")
    return row


async def get_one(conn: asyncpg.Connection, table: str, columns: str, resource: str,
                  row_id: UUID) -> asyncpg.Record:
    """One tenant row by id, or `NotFound` (also for another org's id)."""
    row = await conn.fetchrow(f"SELECT {columns} FROM {table} WHERE id = $1", row_id)
    if row is None:
        raise NotFound(f"{resource} not found")
    return row


async def delete_one(conn: asyncpg.Connection, actor: Actor, table: str, resource: str,
                     row_id: UUID) -> None:
    """Delete one tenant row, with its audit row and `<resource>.deleted` event."""
    deleted = await conn.fetchval(f"DELETE FROM {table} WHERE id = $1 RETURNING id", row_id)
    if deleted is None:
        raise NotFound(f"{resource} not found")
    await record(conn, actor, action=f"{resource}.delete", resource_type=resource,
                 resource_id=row_id, changes=None, event_type=f"{resource}.deleted",
                 payload={"id": row_id})


async def list_page(conn: asyncpg.Connection, table: str, columns: str,
                    page: Window) -> Listing[dict[str, Any]]:
    """One page of all of a tenant's rows of `table`, newest first."""
    total = await conn.fetchval(f"SELECT count(*) FROM {table}")
    rows = await conn.fetch(f"SELECT {columns} FROM {table} ORDER BY created_at DESC, id"
                            " LIMIT $1 OFFSET $2", page.limit, page.offset)
    return listing(page, total, [dict(r) for r in rows])


async def filtered_page(conn: asyncpg.Connection, table: str, columns: str, cond: Conditions,
                        page: Window) -> tuple[int, list[asyncpg.Record]]:
    """The count of `table`'s rows matching `cond` and one page of them, newest first."""
    paging, args = cond.paging(page)
    total = await conn.fetchval(f"SELECT count(*) FROM {table}{cond.where()}", *cond.args)
    rows = await conn.fetch(f"SELECT {columns} FROM {table}{cond.where()}"
                            f" ORDER BY created_at DESC, id{paging}", *args)
    return total, rows
