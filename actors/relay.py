"""The event relay: tails `events` in commit order and publishes each event
to Redis exactly once.

Woken by LISTEN/NOTIFY (every group-commit transaction, which carries the
messages, notifies at COMMIT) and polling every 50 ms for the rest (CRUD
transactions do not notify: a NOTIFY takes a cluster-wide lock at commit,
which cost a quarter of the contact-create rate), it reads committed events
after its cursor (storage.events) and, in ONE Redis script, publishes
them to the pub/sub topics `org:{id}:events`, `chat:{id}:messages` and
`user:{id}:notifications`, appends them to the stream `bidi:events`
(internal consumers), and advances its cursor. Publishing and the cursor
move together, so a relay killed at any point restarts with no gap and no
duplicate. The cursor is copied to Postgres (`relay_cursors`) about once a
second, for when Redis loses it.

It runs as one named, restartable Ray actor (`bidi-relay`). A start that
fails (Postgres or Redis down while Ray restarted it) is tried again with a
backoff until it succeeds. `status()` tells `/readyz` whether it is running
and keeping up: it is stalled when events wait beyond its cursor and it has
not moved for `STALL_AFTER` seconds.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import asyncpg
import ray
from asyncpg.pool import PoolConnectionProxy
from ray.util import metrics

from actors.runtime.startup import Startup
from actors.runtime.workers import start_worker, stop_worker
from core import collector
from core.errors import StartupError
from core.settings import Settings
from core.timings import TIMINGS
from storage import events, timings
from storage.db import Database, connection
from storage.events import Event, Position
from storage.redis import open_redis

log = logging.getLogger(__name__)

RELAY_NAME = "bidi-relay"
STREAM = "bidi:events"
STREAM_MAXLEN = 100_000
STALL_AFTER = 30.0  # seconds without progress while events wait: not ready


# KEYS: the stream, the cursor. ARGV: the cursor's new value, the stream's
# length cap, n, n (topic, message) pairs to publish, then the frames to
# append to the stream.
_PUBLISH = """
local n = tonumber(ARGV[3])
local i = 4
for _ = 1, n do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
  i = i + 2
end
for j = i, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[j])
end
redis.call('SET', KEYS[2], ARGV[1])
return n
"""


def cursor_key(name: str) -> str:
    return f"bidi:relay:{name}:cursor"


def org_topic(org_id: str) -> str:
    return f"org:{org_id}:events"


def chat_topic(chat_id: str) -> str:
    return f"chat:{chat_id}:messages"


def user_topic(user_id: str) -> str:
    return f"user:{user_id}:notifications"


def _encode_position(position: Position) -> bytes:
    return f"{position[0]}:{position[1]}".encode()


def _decode_position(raw: bytes | str | None) -> Position | None:
    if not raw:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    xid, _, seq = text.partition(":")
    return int(xid), int(seq)


class EventRelay:
    def __init__(self, settings: Settings, name: str = "main", batch: int = 2000,
                 poll: float = 0.05, retry: float = 0.005,
                 stall_after: float = STALL_AFTER) -> None:
        self.settings = settings
        self.name = name
        self.batch = batch
        self.poll = poll
        self.retry = retry
        self.stall_after = stall_after
        self.cursor: Position = events.START
        self.published = 0
        self.db: Database | None = None
        self.redis: Any = None
        self._publish: Any = None  # the _PUBLISH script, once connected
        self._listener: asyncpg.Connection | None = None
        self._reader: PoolConnectionProxy[Any] | None = None
        self._stack = AsyncExitStack()  # what start() opened, closed by stop()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._saved: Position | None = None
        self._saved_at = 0.0
        self._notified_at: float | None = None  # the first NOTIFY not yet read after
        self._progress_at = time.monotonic()  # last publish, or last time caught up
        self.last_error: str | None = None
        self._published = metrics.Counter("bidi_relay_events_total", "events published")
        self._lag = metrics.Gauge("bidi_relay_lag_ms",
                                  "insert-to-publish delay of the newest event published")

    async def start(self) -> None:
        """One attempt: running, or (on failure) nothing left open. What it
        opens goes into one exit stack, closed in reverse by `stop()`."""
        settings = self.settings
        if settings.database_url is None or settings.redis_url is None:
            raise StartupError("the relay needs resolved DATABASE_URL and REDIS_URL")
        stack = AsyncExitStack()
        try:
            self.db = await stack.enter_async_context(Database(
                settings.database_url, settings.app_db_password.get_secret_value(),
                max_size=2))
            stack.push_async_callback(self._drop_reader)  # before the pool closes
            self.redis = open_redis(settings.redis_url)
            stack.push_async_callback(self.redis.aclose)
            self._publish = self.redis.register_script(_PUBLISH)
            self.cursor = await self._load_cursor()
            stack.push_async_callback(self._unlisten)
            await self._listen()
            await stack.enter_async_context(timings.publishing(self.redis, "relay"))
            collector.settle()
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._progress_at = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="event-relay")

    async def _reader_conn(self) -> asyncpg.Connection:
        """The connection reads go through, kept between them: a pool's
        release resets the session, a round trip per read (6% of the relay's samples
        in py-spy at full ingest)."""
        assert self.db is not None and self.db.system is not None
        if self._reader is None or self._reader.is_closed():
            self._reader = await self.db.system.acquire()
        return connection(self._reader)

    async def _drop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and self.db is not None and self.db.system is not None:
            with contextlib.suppress(Exception):
                await self.db.system.release(reader)

    async def _listen(self) -> None:
        assert self.settings.database_url is not None
        self._listener = await asyncpg.connect(self.settings.database_url, timeout=10)
        await self._listener.add_listener(events.NOTIFY_CHANNEL, self._notified)

    async def _relisten(self) -> None:
        """After Postgres came back: LISTEN again (polling covers the gap)."""
        if self._listener is not None and not self._listener.is_closed():
            return
        with contextlib.suppress(Exception):
            if self._listener is not None:
                self._listener.terminate()
            self._listener = None
            await self._listen()

    def _notified(self, *_: Any) -> None:
        if self._notified_at is None:
            self._notified_at = time.perf_counter()
        self._wake.set()

    async def _load_cursor(self) -> Position:
        assert self.db is not None and self.db.system is not None
        in_redis = _decode_position(await self.redis.get(cursor_key(self.name)))
        row = await self.db.system.fetchrow(
            "SELECT xid::text::bigint AS xid, seq FROM relay_cursors WHERE name = $1", self.name)
        in_pg = (int(row["xid"]), int(row["seq"])) if row else None
        # Redis moves with the publishes; Postgres may lag it by a second.
        found = max(p for p in (in_redis, in_pg, events.START) if p is not None)
        self._saved = in_pg
        return found

    async def _run(self) -> None:
        """A read per wake-up: a commit that wrote events notifies; a batch held
        behind an older open transaction is retried on the next notify (or
        after `retry`, for transactions that write no events)."""
        limit = self.batch
        while True:
            self._wake.clear()  # before reading: a commit during the read wakes us again
            try:
                published, held = await self.step(limit)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep going: Postgres or Redis may come back
                log.exception("relay step failed")
                self.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(0.5)
                await self._relisten()
                continue
            self.last_error = None
            if published or not held:  # moved on, or nothing waits
                self._progress_at = time.monotonic()
            if published == limit:
                limit = self.batch
                continue
            # Everything waits behind an open transaction: read one row at a
            # time until it ends, not a whole batch every `retry`.
            limit = 1 if held and not published else self.batch
            timeout = self.retry if held else self.poll
            # Woken by a commit, read at once: commits that land during a read
            # and its publish wait for the next one, so reads grow with the load.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def step(self, limit: int | None = None) -> tuple[int, bool]:
        """Publish the next batch of committed events; how many, and whether
        committed events wait behind an older open transaction."""
        assert self.db is not None and self.db.system is not None
        notified, self._notified_at = self._notified_at, None
        try:
            batch, held = await events.read_all(await self._reader_conn(), self.cursor,
                                                limit or self.batch)
        except BaseException:
            await self._drop_reader()  # the next read starts on a fresh connection
            raise
        if not batch:
            await self._save_cursor(force=False)
            return 0, held
        await self.publish(batch)
        if notified is not None:
            TIMINGS.observe("relay", time.perf_counter() - notified, len(batch))
        self.cursor = batch[-1].position
        self.published += len(batch)
        self._published.inc(len(batch))
        newest = batch[-1].created_at
        if newest is not None:
            self._lag.set(max(0.0, (datetime.now(UTC) - newest).total_seconds() * 1000))
        await self._save_cursor(force=False)
        return len(batch), held

    async def publish(self, batch: list[Event]) -> None:
        """The batch in one Redis script (atomic, like MULTI/EXEC, and one
        command and one reply instead of four per event). Each org topic gets
        the batch's events of its org as ONE message, a JSON array of the
        frames (serve.hub splits it, and writes them to a socket at once);
        then each chat and user topic its events one by one, in commit
        order. Every event is on its org topic, so a connection on the org
        topic has seen everything before its other topics' copies arrive
        (dropped as already sent), and a connection without it gets its
        chats' and its own events in order."""
        orgs: dict[str, list[bytes]] = {}
        rest: list[str | bytes] = []
        for event in batch:
            orgs.setdefault(org_topic(event.org_id), []).append(event.frame)
            if event.chat_id:
                rest += (chat_topic(event.chat_id), event.frame)
            for user_id in _notify(event):
                rest += (user_topic(user_id), event.frame)
        pairs: list[str | bytes] = []
        for topic, frames in orgs.items():
            pairs += (topic, frames[0] if len(frames) == 1 else b"[" + b",".join(frames) + b"]")
        pairs += rest
        await self._publish(keys=[STREAM, cursor_key(self.name)],
                            args=[_encode_position(batch[-1].position), STREAM_MAXLEN,
                                  len(pairs) // 2, *pairs, *(e.frame for e in batch)])

    async def _save_cursor(self, *, force: bool) -> None:
        if self._saved == self.cursor:
            return
        now = time.monotonic()
        if not force and now - self._saved_at < 1.0:
            return
        assert self.db is not None and self.db.system is not None
        await self.db.system.execute(
            "INSERT INTO relay_cursors (name, xid, seq) VALUES ($1, $2::text::xid8, $3)"
            " ON CONFLICT (name) DO UPDATE SET xid = excluded.xid, seq = excluded.seq,"
            " updated_at = now()", self.name, str(self.cursor[0]), self.cursor[1])
        self._saved, self._saved_at = self.cursor, now

    def status(self) -> dict[str, Any]:
        """Running or not, how far, and whether it keeps up (`problem`)."""
        running = self._task is not None and not self._task.done()
        behind = round(time.monotonic() - self._progress_at, 3) if running else None
        problem = None
        if not running:
            problem = "not running"
        elif behind is not None and behind > self.stall_after:
            problem = (f"events wait and the cursor has not moved for {behind:.0f} s"
                       + (f" ({self.last_error})" if self.last_error else ""))
        return {"running": running, "cursor": list(self.cursor), "published": self.published,
                "behind_seconds": behind, "error": self.last_error, "problem": problem}

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            with contextlib.suppress(Exception):
                await self._save_cursor(force=True)
        stack, self._stack = self._stack, AsyncExitStack()
        await stack.aclose()
        self.db = self.redis = None

    async def _unlisten(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=5)
            self._listener = None


def _notify(event: Event) -> list[str]:
    """Users an event is addressed to (`notify_user_ids` in its payload)."""
    if b"notify_user_ids" not in event.frame:
        return []
    data = events.parse_frame(event.frame).payload or {}
    return [str(u) for u in data.get("notify_user_ids") or ()]


class RelayActor:
    """The Ray actor around one EventRelay. Ray runs an async actor's
    `__init__` on its event loop, so the relay starts at once, and again by
    itself after Ray restarts a crashed relay; a failed start is retried
    until it succeeds."""

    def __init__(self, settings: Settings, name: str = "main") -> None:
        self.relay = EventRelay(settings, name=name)
        self.startup = Startup(f"event relay {name}", self.relay.start)
        self.startup.begin()

    async def ping(self) -> Position:
        """The cursor, once started (waits through failed attempts)."""
        await self.startup.until_up()
        return self.relay.cursor

    def pid(self) -> int:
        return os.getpid()

    async def stats(self) -> dict[str, Any]:
        await self.ping()
        return {"cursor": list(self.relay.cursor), "published": self.relay.published}

    def status(self) -> dict[str, Any]:
        """For readiness: at once, started or not."""
        if not self.startup.up:
            started = self.startup.status()
            return {"running": False, "state": "starting", "attempts": started["attempts"],
                    "error": started["error"],
                    "problem": f"starting (attempt {started['attempts']}"
                               + (f": {started['error']})" if started["error"] else ")")}
        status = self.relay.status()
        return {"state": "running" if status["running"] else "stopped", **status}

    async def shutdown(self) -> None:
        await self.startup.cancel()
        await self.relay.stop()


RemoteRelay = ray.remote(RelayActor)


def start_relay(settings: Settings, timeout: float = 60.0) -> bool:
    return start_worker(RemoteRelay, RELAY_NAME, settings, "the event relay", timeout)


def stop_relay(timeout: float = 30.0) -> None:
    stop_worker(RELAY_NAME, timeout)
