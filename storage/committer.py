"""Group commit: the writes of many actor turns in one transaction.

A turn hands its writes to `commit(org_id, writes)` and is resumed only
after the COMMIT that contains them, so "acknowledged" always means durable.
Every few milliseconds (or at `max_rows`) the pending calls are flushed in a
single transaction as `bidi_app`: grouped by org (RLS context set per group)
and, level by level, by statement, so each statement runs once per flush
through `executemany` while each call's own writes keep their order.

When a flush fails, each call is retried alone in its own transaction, so one
bad turn fails only itself.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from core.errors import Unavailable
from storage.db import Database
from storage.events import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Write:
    sql: str
    args: tuple[Any, ...]


class CommitError(Unavailable):
    """The writes of a turn could not be committed; nothing of them is stored."""


@dataclass(slots=True)
class _Call:
    org_id: str
    writes: Sequence[Write]
    future: asyncio.Future[None]


@dataclass
class CommitStats:
    flushes: int = 0
    calls: int = 0
    rows: int = 0
    retries: int = 0
    last_batch_rows: int = 0
    flush_seconds: float = 0.0


@dataclass
class GroupCommitter:
    db: Database
    max_delay: float = 0.002
    max_rows: int = 5000
    notify: str | None = NOTIFY_CHANNEL  # wakes the event relay
    stats: CommitStats = field(default_factory=CommitStats)
    _pending: list[_Call] = field(default_factory=list)
    _pending_rows: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _closed: bool = False

    async def __aenter__(self) -> GroupCommitter:
        self._task = asyncio.create_task(self._run(), name="group-committer")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def commit(self, org_id: UUID | str, writes: Sequence[Write]) -> None:
        """Resolve after the COMMIT holding `writes` (atomic together)."""
        if not writes:
            return
        if self._closed:
            raise CommitError("the committer is shut down")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Call(str(org_id), writes, future))
        self._pending_rows += len(writes)
        self._wake.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._pending and self._closed:
                return
            # Linger a little so that concurrent turns share the transaction.
            if self._pending_rows < self.max_rows and not self._closed:
                await asyncio.sleep(self.max_delay)
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._take()
                await self._flush(batch)

    def _take(self) -> tuple[list[_Call], list[_Call]]:
        rows, cut = 0, 0
        for cut, call in enumerate(self._pending, 1):  # noqa: B007
            rows += len(call.writes)
            if rows >= self.max_rows:
                break
        batch, rest = self._pending[:cut], self._pending[cut:]
        self._pending_rows -= rows
        return batch, rest

    async def _flush(self, batch: list[_Call]) -> None:
        started = time.perf_counter()
        rows = sum(len(c.writes) for c in batch)
        try:
            await self._execute(batch)
        except (TimeoutError, asyncpg.PostgresError, OSError) as exc:
            log.warning("group commit of %d calls failed (%s); retrying one by one",
                        len(batch), exc)
            self.stats.retries += 1
            await self._retry_alone(batch)
        else:
            for call in batch:
                if not call.future.done():
                    call.future.set_result(None)
        self.stats.flushes += 1
        self.stats.calls += len(batch)
        self.stats.rows += rows
        self.stats.last_batch_rows = rows
        self.stats.flush_seconds += time.perf_counter() - started

    async def _execute(self, batch: list[_Call]) -> None:
        by_org: dict[str, list[_Call]] = defaultdict(list)
        for call in batch:
            by_org[call.org_id].append(call)
        if self.db.app is None:
            raise CommitError("database is not open")
        async with self.db.app.acquire() as conn, conn.transaction():
            if self.notify:  # delivered at COMMIT, once per transaction
                await conn.execute("SELECT pg_notify($1, '')", self.notify)
            for org_id, calls in by_org.items():
                await conn.execute("SELECT set_config('app.org_id', $1, true)", org_id)
                depth = max(len(c.writes) for c in calls)
                for level in range(depth):
                    by_sql: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
                    for call in calls:
                        if level < len(call.writes):
                            write = call.writes[level]
                            by_sql[write.sql].append(write.args)
                    for sql, args in by_sql.items():
                        if len(args) == 1:
                            await conn.execute(sql, *args[0])
                        else:
                            await conn.executemany(sql, args)

    async def _retry_alone(self, batch: list[_Call]) -> None:
        for call in batch:
            try:
                await self._execute([call])
            except (TimeoutError, asyncpg.PostgresError, OSError) as exc:
                if not call.future.done():
                    call.future.set_exception(CommitError(f"commit failed: {exc}"))
            else:
                if not call.future.done():
                    call.future.set_result(None)
