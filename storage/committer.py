"""Group commit: the writes of many actor turns in one transaction.

A turn hands its writes to `commit(org_id, writes)` and is resumed only
after the COMMIT that contains them, so "acknowledged" always means durable.
As soon as one of `max_flushes` transactions is free, the pending calls
are flushed in a single transaction as `bidi_app`: grouped by org (RLS context set per group)
and, level by level, by statement, so each statement runs once per flush
through `executemany` (or, for a write with a bulk form, as one statement
over arrays of the arguments) while each call's own writes keep their order.

A write may report what it did: built with `Write.reporting`, its
statement RETURNs its first argument for the row it wrote (`INSERT ... ON
CONFLICT DO NOTHING RETURNING id`), and after COMMIT `write.inserted` says
whether it did, so a turn can tell a stored row from a conflicting one.

When a flush fails, each call is retried alone in its own transaction, so one
bad turn fails only itself. Whatever a flush raises fails only its own calls:
the loop lives on (and is started again should it ever end). Every call has a
deadline (`timeout` after it was handed in): a flush still running at the
earliest deadline of its calls is cancelled and rolled back, a call whose
deadline passed while it queued is never written, and either way the turn
gets `CommitError` (retryable) instead of waiting for ever.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from core.errors import Unavailable
from core.timings import TIMINGS
from storage.db import Database, connection
from storage.events import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

COMMIT_TIMEOUT = 10.0  # seconds a turn waits for its COMMIT at most
# A COMMIT already sent is let finish (a cancelled one would leave the outcome
# unknown) for up to COMMIT_GRACE more; a waiter gives up on a wedged loop
# after its deadline plus twice that.
COMMIT_GRACE = 2.0
WATCH_EVERY = 1.0  # seconds between the watchdog's looks
FOREIGN_KEY_VIOLATION = "23503"


@dataclass(slots=True)
class Outcome:
    """What a reporting write did; None until its COMMIT (and after a failure)."""

    inserted: bool | None = None


@dataclass(frozen=True, slots=True)
class Write:
    sql: str
    args: tuple[Any, ...]
    outcome: Outcome | None = field(default=None, compare=False)
    # The same write for many at once: one statement whose `$n` is the array
    # of every write's n-th argument (scalars or dicts: a list argument
    # would read as another array dimension); a reporting one RETURNs the
    # `$1` of each row it wrote, in the writes' order.
    bulk: str | None = field(default=None, compare=False)

    @classmethod
    def reporting(cls, sql: str, args: tuple[Any, ...], bulk: str | None = None) -> Write:
        """A write whose statement RETURNs `$1` for at most one row it wrote."""
        return cls(sql, args, Outcome(), bulk)

    @property
    def inserted(self) -> bool:
        """Whether the committed statement wrote its row (reporting writes only)."""
        if self.outcome is None or self.outcome.inserted is None:
            raise ValueError("only a committed reporting write knows what it wrote")
        return self.outcome.inserted


class CommitError(Unavailable):
    """The writes of a turn could not be committed; nothing of them is stored
    (unless a deadline fell on the COMMIT itself: retrying with the same dedup
    keys is safe either way). `sqlstate` names the database's reason, if any."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate

    @classmethod
    def of(cls, exc: BaseException) -> CommitError:
        if isinstance(exc, CommitError):
            return exc
        if isinstance(exc, TimeoutError):
            return cls("the commit did not finish before its deadline")
        sqlstate = getattr(exc, "sqlstate", None) if isinstance(exc, asyncpg.PostgresError) \
            else None
        text = str(exc) or type(exc).__name__
        return cls(f"commit failed: {text}", sqlstate=sqlstate)


@dataclass(slots=True)
class _Call:
    org_id: str
    writes: Sequence[Write]
    future: asyncio.Future[None]
    deadline: float  # on the event loop's clock
    queued_at: float = 0.0  # perf_counter


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
    # No linger: a flush starts as soon as a transaction is free, with the
    # calls of the current loop tick, and the calls that arrive while every
    # transaction is busy form the next one (batches grow with the load,
    # latency stays one commit when it is light).
    max_flushes: int = 2  # transactions in flight at once
    max_rows: int = 5000
    split_at: int = 32  # calls waiting with slots free: shared between the slots
    notify: str | None = NOTIFY_CHANNEL  # wakes the event relay
    timeout: float = COMMIT_TIMEOUT
    stats: CommitStats = field(default_factory=CommitStats)
    _pending: list[_Call] = field(default_factory=list)
    _pending_rows: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _watchdog: asyncio.Task[None] | None = None
    _inflight: list[list[_Call]] = field(default_factory=list)  # the batches being flushed
    _flushing: set[asyncio.Task[None]] = field(default_factory=set)
    _slot: asyncio.Event = field(default_factory=asyncio.Event)
    _closed: bool = False

    def __post_init__(self) -> None:
        if self.notify is not None and not self.notify.isidentifier():
            raise ValueError(f"notify channel {self.notify!r} is not an identifier")

    async def __aenter__(self) -> GroupCommitter:
        self._ensure_running()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closed = True
        self._wake.set()
        if self._task is not None:
            try:
                await self._task
            except Exception:
                log.exception("the group committer ended with an error")
            self._task = None
        if self._flushing:
            await asyncio.gather(*list(self._flushing), return_exceptions=True)
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        self._fail(self._pending, CommitError("the committer is shut down"))
        self._pending, self._pending_rows = [], 0

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            if self._task is not None:
                log.error("the group committer had stopped; starting it again")
            self._task = asyncio.create_task(self._run(), name="group-committer")
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._watch(), name="group-commit-watchdog")

    async def _watch(self) -> None:
        """Fail what is still unsettled past its deadline plus twice the grace
        (queued or in a flush that never came back)."""
        while not self._closed:
            await asyncio.sleep(WATCH_EVERY)
            limit = asyncio.get_running_loop().time() - 2 * COMMIT_GRACE
            late = [c for c in (*self._pending, *(c for b in self._inflight for c in b))
                    if c.deadline <= limit and not c.future.done()]
            self._fail(late, CommitError(
                f"the commit did not finish within {self.timeout:g} s"))

    async def commit(self, org_id: UUID | str, writes: Sequence[Write]) -> None:
        """Resolve after the COMMIT holding `writes` (atomic together);
        `CommitError` when that fails or takes longer than `timeout`."""
        if not writes:
            return
        if self._closed:
            raise CommitError("the committer is shut down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        call = _Call(str(org_id), writes, future, loop.time() + self.timeout,
                     time.perf_counter())
        self._pending.append(call)
        self._pending_rows += len(writes)
        self._ensure_running()
        self._wake.set()
        # The flush settles the call by its deadline; the watchdog is the
        # backstop (one task for all calls: a timer per call cost ~12% of
        # bench/actors.py's group-commit rate).
        await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._pending and self._closed:
                return
            await asyncio.sleep(0)  # the turns of this loop tick (a delivered batch) join
            self._wake.clear()
            while self._pending:
                while len(self._flushing) >= self.max_flushes:
                    self._slot.clear()
                    await self._slot.wait()
                # A burst (a poll's batch) is shared by the free transactions:
                # they run on Postgres backends of their own, side by side.
                free, waiting = self.max_flushes - len(self._flushing), len(self._pending)
                share = waiting if waiting < self.split_at else -(-waiting // free)
                batch, self._pending = self._take(share)
                if batch:
                    task = asyncio.create_task(self._flush_guarded(batch))
                    self._flushing.add(task)
                    task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushing.discard(task)
        self._slot.set()

    async def _flush_guarded(self, batch: list[_Call]) -> None:
        """One flush; whatever it raises fails its own calls only."""
        try:
            await self._flush(batch)
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                self._fail(batch, CommitError("the committer is shut down"))
                raise
            self._fail(batch, CommitError.of(exc))  # a query's, not ours
        except Exception as exc:
            log.exception("group commit of %d calls failed", len(batch))
            self._fail(batch, CommitError.of(exc))

    def _take(self, most: int) -> tuple[list[_Call], list[_Call]]:
        rows, cut = 0, 0
        for cut, call in enumerate(self._pending, 1):  # noqa: B007
            rows += len(call.writes)
            if rows >= self.max_rows or cut >= most:
                break
        batch, rest = self._pending[:cut], self._pending[cut:]
        self._pending_rows -= rows
        # Calls past their deadline, or whose turn stopped waiting, are dropped.
        now = asyncio.get_running_loop().time()
        late = [c for c in batch if c.deadline <= now]
        self._fail(late, CommitError(f"the commit did not start within {self.timeout:g} s"))
        return [c for c in batch if not c.future.done()], rest

    async def _flush(self, batch: list[_Call]) -> None:
        if not batch:
            return
        started = time.perf_counter()
        for call in batch:
            TIMINGS.observe("commit_queue", started - call.queued_at)
        rows = sum(len(c.writes) for c in batch)
        self._inflight.append(batch)
        try:
            await self._execute(batch)
        except TimeoutError as exc:
            # Stuck (a lock, a lost connection): one by one would wait as long again.
            log.warning("group commit of %d calls did not finish by its deadline",
                        len(batch))
            self._fail(batch, CommitError.of(exc))
        except Exception as exc:
            log.warning("group commit of %d calls failed (%s: %s); retrying one by one",
                        len(batch), type(exc).__name__, exc)
            self.stats.retries += 1
            await self._retry_alone(batch)
        else:
            for call in batch:
                if not call.future.done():
                    call.future.set_result(None)
        finally:
            self._inflight.remove(batch)
        self.stats.flushes += 1
        self.stats.calls += len(batch)
        self.stats.rows += rows
        self.stats.last_batch_rows = rows
        took = time.perf_counter() - started
        self.stats.flush_seconds += took
        TIMINGS.observe("commit", took, len(batch))

    async def _execute(self, batch: list[_Call]) -> None:
        """One transaction for `batch`. Its statements are cancelled (and
        rolled back: TimeoutError) at the earliest deadline of its calls; a
        COMMIT that was reached is not."""
        pool = self.db.app
        if pool is None:
            raise CommitError("database is not open")
        deadline = min(c.deadline for c in batch)
        async with asyncio.timeout_at(deadline):
            conn = await pool.acquire()
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._statements(connection(conn), batch)  # BEGIN included
            except BaseException:
                await _rollback(connection(conn))
                raise
            try:
                await asyncio.wait_for(conn.execute("COMMIT"), COMMIT_GRACE)
            except BaseException:
                conn.terminate()  # whatever its state, it is not reused
                raise
        finally:
            await pool.release(conn)

    async def _statements(self, conn: asyncpg.Connection, batch: list[_Call]) -> None:
        by_org: dict[str, list[_Call]] = defaultdict(list)
        for call in batch:
            by_org[call.org_id].append(call)
        # One round trip opens the transaction, asks for the NOTIFY (sent at
        # COMMIT, once per transaction) and sets the first org; the org ids
        # are inlined as canonical UUIDs, which hold no quote.
        prelude = "BEGIN; " + (f"NOTIFY {self.notify}; " if self.notify else "")
        for org_id, calls in by_org.items():
            await conn.execute(
                f"{prelude}SELECT set_config('app.org_id', '{UUID(org_id)}', true)")
            prelude = ""
            depth = max(len(c.writes) for c in calls)
            for level in range(depth):
                by_sql: dict[tuple[str, bool], list[Write]] = defaultdict(list)
                for call in calls:
                    if level < len(call.writes):
                        write = call.writes[level]
                        by_sql[(write.sql, write.outcome is not None)].append(write)
                for (sql, reporting), writes in by_sql.items():
                    bulk = writes[0].bulk if len(writes) > 1 else None
                    if bulk is not None:
                        await _run_bulk(conn, bulk, writes, reporting)
                    elif reporting:
                        await _run_reporting(conn, sql, writes)
                    elif len(writes) == 1:
                        await conn.execute(sql, *writes[0].args)
                    else:
                        await conn.executemany(sql, [w.args for w in writes])

    async def _retry_alone(self, batch: list[_Call]) -> None:
        for call in batch:
            if call.future.done():
                continue
            try:
                await self._execute([call])
            except Exception as exc:
                self._fail([call], CommitError.of(exc))
            else:
                if not call.future.done():
                    call.future.set_result(None)

    @staticmethod
    def _fail(calls: Sequence[_Call], error: CommitError) -> None:
        for call in calls:
            for write in call.writes:
                if write.outcome is not None:  # what a rolled back flush saw is void
                    write.outcome.inserted = None
            if not call.future.done():  # one instance per waiter: tracebacks stay apart
                call.future.set_exception(CommitError(error.message, sqlstate=error.sqlstate))


async def _run_bulk(conn: asyncpg.Connection, sql: str, writes: list[Write],
                    reporting: bool) -> None:
    """Many writes as one statement over arrays of their arguments. A
    reporting one marks as inserted the first write of each `$1` returned
    (a later one with the same key found the row there)."""
    columns = [list(column) for column in zip(*(w.args for w in writes), strict=True)]
    if not reporting:
        await conn.execute(sql, *columns)
        return
    wrote = {str(row[0]) for row in await conn.fetch(sql, *columns)}
    for write in writes:
        assert write.outcome is not None
        key = str(write.args[0])
        write.outcome.inserted = key in wrote
        wrote.discard(key)


async def _run_reporting(conn: asyncpg.Connection, sql: str, writes: list[Write]) -> None:
    """Run one reporting statement for each write and record which wrote a
    row. `fetchmany` returns the rows of all of them in one list, in the
    writes' order, each echoing its write's `$1`: walking both in step
    tells them apart, even when two writes share a key (the first wins)."""
    if len(writes) == 1:
        rows = await conn.fetch(sql, *writes[0].args)
    else:
        rows = await conn.fetchmany(sql, [w.args for w in writes])
    returned = iter(rows)
    row = next(returned, None)
    for write in writes:
        assert write.outcome is not None
        hit = row is not None and str(row[0]) == str(write.args[0])
        write.outcome.inserted = hit
        if hit:
            row = next(returned, None)


async def _rollback(conn: asyncpg.Connection) -> None:
    """Undo a failed or cancelled flush; a connection that cannot (its socket
    is gone, the cancelled query will not end) is dropped, and the pool opens
    another."""
    try:
        await asyncio.wait_for(conn.execute("ROLLBACK"), COMMIT_GRACE)
    except Exception:
        conn.terminate()
