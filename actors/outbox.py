"""The outbox sweeper: outbound messages left `pending` by a host that died
(or by a chat that passivated while a retry waited) are sent again without
waiting for their chat's next activation.

Every `interval` seconds it reads, across orgs (as the owner: `messages` is
under row-level security), the outbound messages still pending whose next
attempt is due, or that were never tried, `grace` seconds late, and tells
each one's chat actor to `Resend` them. The chat actor stays the only
sender: it skips what it already has on its way and re-reads the rest, so a
nudge to a live chat costs a lookup, never a second send. The message id
is the `webhook-id` of every attempt, so receivers dedup if a crash makes
one go twice.

Each round also wakes the poller of every integration read by polling
(actors.polling.wake_all: Telegram bots in polling mode, mailboxes), so
pollers start with the engine and again after their host restarted; and
it runs the agents' follow-ups that are due (storage.followups: claimed in
a system transaction, the chat told to run its agent, then marked done; a
claim whose chat was not reached is claimed again after its grace).

It runs as one named, restartable Ray actor (`bidi-outbox`), like the relay.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import defaultdict
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import ray

from actors.polling import wake_all
from actors.refs import ChatRef
from actors.runtime.client import ActorSystem
from actors.runtime.startup import Startup
from actors.runtime.workers import start_worker, stop_worker
from core.errors import StartupError
from core.settings import Settings
from storage import agents, followups, messages
from storage.db import Database

log = logging.getLogger(__name__)

OUTBOX_NAME = "bidi-outbox"
DEAL_TRIGGER = "deal.stage.changed"  # the follow-up trigger's cursor

# The expression of the partial index idx_messages_outbound_due.
DUE = """
SELECT organization_id, chat_id, id FROM messages
WHERE status = 'pending' AND NOT is_incoming AND chat_id IS NOT NULL
  AND coalesce(next_attempt_at, created_at) <= localtimestamp - make_interval(secs => $1)
ORDER BY coalesce(next_attempt_at, created_at) LIMIT $2
"""


class OutboxSweeper:
    def __init__(self, settings: Settings, interval: float = 2.0, grace: float = 5.0,
                 batch: int = 1000, fetch_grace: float = 300.0) -> None:
        self.settings = settings
        self.interval = interval
        self.grace = grace  # a live chat's own timer normally comes first
        self.fetch_grace = fetch_grace  # a live chat fetches at once; these it left
        self.batch = batch
        self.nudged = 0
        self.db: Database | None = None
        self.system: ActorSystem | None = None
        self._task: asyncio.Task[None] | None = None
        self._stack = AsyncExitStack()  # what start() opened, closed by stop()

    async def start(self) -> None:
        """One attempt: running, or nothing left open (one exit stack)."""
        settings = self.settings
        if settings.database_url is None:
            raise StartupError("the outbox sweeper needs a resolved DATABASE_URL")
        stack = AsyncExitStack()
        try:
            self.db = await stack.enter_async_context(Database(
                settings.database_url, settings.app_db_password.get_secret_value(),
                max_size=2))
            self.system = await stack.enter_async_context(ActorSystem(settings.hosts))
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._task = asyncio.create_task(self._run(), name="outbox-sweeper")

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep going: Postgres or a host may come back
                log.exception("outbox sweep failed")
            try:
                await self.refetch()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("nudging unfetched files failed")
            try:
                assert self.db is not None and self.system is not None
                await wake_all(self.db, self.system)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("waking the pollers failed")
            try:
                await self.followups()
                await self.deal_moves()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("running the due follow-ups failed")
            await asyncio.sleep(self.interval)

    async def deal_moves(self) -> int:
        """Run the follow-up agents of each deal a person moved to a new stage,
        on the deal's contact's latest chat; answers how many runs were told.
        The position moves on once they were told (a run is at least once)."""
        assert self.db is not None and self.system is not None
        async with self.db.system_tx() as conn:
            after = await agents.trigger_position(conn, DEAL_TRIGGER)
            last, moves = await agents.deal_moves(conn, after, self.batch)
        told = 0
        for move in moves:
            chat = ChatRef(self.system, str(move["organization_id"]), str(move["chat_id"]))
            for agent_id in move["agents"]:
                try:
                    await chat.run_agent("deal.stage.changed", agent_id)
                    told += 1
                except Exception as exc:  # a chat that is gone: nothing to follow up on
                    log.warning("deal %s: follow-up agent %s not started: %s",
                                move["deal_id"], agent_id, exc)
        if last != after:
            async with self.db.system_tx() as conn:
                await agents.move_trigger(conn, DEAL_TRIGGER, last)
        return told

    async def followups(self) -> int:
        """Tell the chat of each due follow-up to run its agent; answers how many."""
        assert self.db is not None and self.system is not None
        async with self.db.system_tx() as conn:
            due = await followups.claim_due(conn, datetime.now(UTC), limit=self.batch)
        started = 0
        for item in due:
            if item["chat_id"] is not None:
                try:
                    await ChatRef(self.system, str(item["organization_id"]),
                                  str(item["chat_id"])).run_agent(
                        "followup", str(item["agent_id"]))
                except Exception as exc:  # claimed again after its grace
                    log.warning("follow-up %s not started: %s", item["id"], exc)
                    continue
                started += 1
            async with self.db.system_tx() as conn:
                await followups.finish(conn, item["id"], datetime.now(UTC))
        return started

    async def refetch(self) -> int:
        """Nudge the chats whose messages' files were left unfetched."""
        assert self.db is not None and self.db.system is not None
        assert self.system is not None
        async with self.db.system_tx() as conn:
            chats = await messages.unfetched(conn, self.fetch_grace, self.batch)
        tells = [ChatRef(self.system, org_id, chat_id).fetch_files(tuple(ids))
                 for (org_id, chat_id), ids in chats.items()]
        for result in await asyncio.gather(*tells, return_exceptions=True):
            if isinstance(result, Exception):  # its host is down: the next pass retries
                log.warning("outbox: a chat's files not nudged: %s", result)
        return sum(len(ids) for ids in chats.values())

    async def sweep(self) -> int:
        """Nudge the chats of every due message; return how many messages."""
        assert self.db is not None and self.db.system is not None
        assert self.system is not None
        rows = await self.db.system.fetch(DUE, self.grace, self.batch)
        chats: dict[tuple[str, str], list[str]] = defaultdict(list)
        for row in rows:
            chats[(str(row["organization_id"]), str(row["chat_id"]))].append(str(row["id"]))
        tells = [ChatRef(self.system, org_id, chat_id).resend(tuple(ids))
                 for (org_id, chat_id), ids in chats.items()]
        for (_, chat_id), result in zip(chats, await asyncio.gather(
                *tells, return_exceptions=True), strict=True):
            if isinstance(result, Exception):  # its host is down: the next sweep retries
                log.warning("outbox: chat %s not reachable: %s", chat_id, result)
        self.nudged += len(rows)
        return len(rows)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        stack, self._stack = self._stack, AsyncExitStack()
        await stack.aclose()
        self.db = self.system = None


class OutboxActor:
    """The Ray actor around one OutboxSweeper (started in `__init__`, so
    again by itself after Ray restarts it)."""

    def __init__(self, settings: Settings) -> None:
        self.sweeper = OutboxSweeper(settings)
        self.startup = Startup("outbox sweeper", self.sweeper.start)
        self.startup.begin()

    async def ping(self) -> int:
        await self.startup.until_up()
        return self.sweeper.nudged

    def pid(self) -> int:
        return os.getpid()

    async def shutdown(self) -> None:
        await self.startup.cancel()
        await self.sweeper.stop()


RemoteOutbox = ray.remote(OutboxActor)


def start_outbox(settings: Settings, timeout: float = 60.0) -> bool:
    return start_worker(RemoteOutbox, OUTBOX_NAME, settings, "the outbox sweeper", timeout)


def stop_outbox(timeout: float = 30.0) -> None:
    stop_worker(OUTBOX_NAME, timeout)
