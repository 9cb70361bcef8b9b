"""TelegramPoller: one bot's long polling (a Telegram integration in
`polling` mode), keyed by the integration's id.

While the integration is active and in polling mode, its poller runs one
loop, outside its turns: `getUpdates` after the stored offset (a long
poll), the batch to the chat actors (`deliver_batch`, which resolves after
COMMIT), then the new offset into `channel_cursors`, then the connector's
`settle` (callback queries answered). Telegram forgets updates only when a
later `getUpdates` names a higher offset, so a poller that dies anywhere
before the offset is stored fetches the same updates again, and the chats'
dedup keys make that harmless: nothing is lost, nothing is stored twice.

Failures: a retryable one (network, 5xx, 429 with its `retry_after`, 409
when a webhook is set or another client polls) waits and goes on, backing
off up to `MAX_BACKOFF`; a 409 also re-reads the integration, which may have
changed mode. A final one (the token refused) stops the loop and records
the error on the integration, shown by the API until the integration is
switched off and on or changes mode.

Virtual-actor placement gives one activation per integration in the
cluster. `PollerWaker.wake_all` (run by the outbox sweeper every few
seconds) tells the poller of every integration that should be polling to
`Wake`: a no-op while it polls, a restart after its host restarted.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import msgspec

from actors.messages import GetState
from actors.refs import deliver_batch
from actors.runtime.actor import VirtualActor, on
from actors.runtime.client import ActorRef, ActorSystem
from actors.runtime.retry import DEFAULT_POLICY
from channels.base import (
    CONFLICT,
    MAX_RETRY_AFTER,
    ChannelError,
    integration_loader,
    sender_for,
)
from channels.telegram import CHANNEL, TelegramConnector
from storage import cursors, integrations
from storage.audit import Actor
from storage.db import Database
from storage.integrations import Integration

log = logging.getLogger(__name__)

CURSOR = "telegram:offset"
POLL_TIMEOUT = 25.0  # seconds a getUpdates waits for updates (Telegram allows 50)
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
RELOAD_EVERY = 30.0  # seconds between re-reads of the integration while polling


class Wake(msgspec.Struct, frozen=True):
    """Poll if the integration is active and in polling mode (re-read now,
    unless the poller is polling already); answers whether it polls."""


class Stop(msgspec.Struct, frozen=True):
    """Stop polling (the integration changed mode, or was switched off or
    deleted); answers whether it was polling."""


def backoff(failures: int, retry_after: float | None = None,
            rng: random.Random | None = None) -> float:
    """Seconds before the next getUpdates after `failures` failures in a row:
    the provider's `retry_after` when it gave one, else a jittered
    exponential step capped at `MAX_BACKOFF`."""
    if retry_after is not None:
        return max(0.0, min(retry_after, MAX_RETRY_AFTER))
    step = min(FIRST_BACKOFF * 2.0 ** max(failures - 1, 0), MAX_BACKOFF)
    return step * (1.0 - 0.25 * (rng or random).random())


def _should_poll(integration: Integration | None) -> bool:
    return (integration is not None and integration.type == CHANNEL
            and integration.is_active and integration.error is None
            and integration.config.get("mode") == "polling")


class TelegramPoller(VirtualActor):
    kind = "telegram-poller"
    __slots__ = ("integration", "cursor", "task", "error", "polls", "failures", "reloaded")

    async def on_activate(self) -> None:
        self.integration: Integration | None = None
        self.cursor: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.error: str | None = None  # the last failure, retryable or not
        self.polls = 0
        self.failures = 0
        self.reloaded = 0.0
        async with self.ctx.db.tenant_tx(self.org_id) as conn:
            position = await cursors.get(conn, self.key, CURSOR)
        self.cursor = None if position is None else str(position)

    def can_passivate(self) -> bool:
        return not self.polling

    async def on_deactivate(self) -> None:
        await self._cancel()

    @property
    def polling(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def connector(self) -> TelegramConnector:
        # The host's one Telegram connector (one HTTP client per bot, the
        # pacer), shared with the chats' sends.
        return sender_for(self.ctx, CHANNEL)  # type: ignore[return-value]

    async def _load(self) -> Integration | None:
        loader = self.ctx.loader("integration", lambda: integration_loader(self.ctx))
        self.reloaded = asyncio.get_running_loop().time()
        found: Integration | None = await loader.load((self.org_id, self.key))
        return found

    # -- turns ------------------------------------------------------------

    @on(Wake)
    async def wake(self, _: Wake) -> bool:
        if self.polling:
            return True
        integration = await self._load()
        if not _should_poll(integration):
            return False
        self.integration, self.failures, self.error = integration, 0, None
        self.task = asyncio.create_task(self._run(), name=f"telegram poller {self.key}")
        return True

    @on(Stop)
    async def stop(self, _: Stop) -> bool:
        was = self.polling
        await self._cancel()
        return was

    @on(GetState)
    def state(self, _: GetState) -> dict[str, Any]:
        return {"integration_id": self.key, "polling": self.polling, "cursor": self.cursor,
                "polls": self.polls, "failures": self.failures, "error": self.error}

    async def _cancel(self) -> None:
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- the loop ---------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                if not await self._once():
                    return
                self.failures, self.error = 0, None
                continue
            except ChannelError as exc:
                self.failures += 1
                self.error = str(exc)
                if not exc.retryable:
                    await self._give_up(str(exc))
                    return
                delay = backoff(self.failures, exc.retry_after)
                log.warning("telegram poller %s: %s; next getUpdates in %.1f s",
                            self.key, exc, delay)
                # A webhook set meanwhile answers 409: the mode may have changed.
                if exc.reason == CONFLICT and not await self._still_polling():
                    return
            except Exception as exc:  # our side (Postgres, a chat's host): the same updates again
                self.failures += 1
                self.error = f"{type(exc).__name__}: {exc}"
                delay = backoff(self.failures)
                log.warning("telegram poller %s: delivering failed: %s; again in %.1f s",
                            self.key, self.error, delay)
            await asyncio.sleep(delay)

    async def _once(self) -> bool:
        """One getUpdates and what it carried, committed; False when the
        integration no longer polls (switched off without a Stop reaching us)."""
        if asyncio.get_running_loop().time() - self.reloaded > RELOAD_EVERY \
                and not await self._still_polling():
            return False
        assert self.integration is not None
        batch, cursor = await self.connector.poll(self.integration, self.cursor,
                                                  timeout=POLL_TIMEOUT)
        self.polls += 1
        await deliver_batch(self.ctx.system, batch)  # resolves after COMMIT
        if cursor is not None and cursor != self.cursor:
            async with self.ctx.db.tenant_tx(self.org_id) as conn:
                await cursors.put(conn, self.org_id, self.key, CURSOR, int(cursor))
                await integrations.synced(conn, self.key)
            self.cursor = cursor  # confirmed to Telegram by the next getUpdates
        await self.connector.settle(self.integration, batch)
        return True

    async def _still_polling(self) -> bool:
        integration = await self._load()
        if not _should_poll(integration):
            log.info("telegram poller %s: no longer in polling mode; stopping", self.key)
            return False
        self.integration = integration
        return True

    async def _give_up(self, error: str) -> None:
        log.error("telegram poller %s: stopped: %s", self.key, error)
        try:
            async with self.ctx.db.tenant_tx(self.org_id) as conn:
                await integrations.failed(conn, Actor(self.org_id), self.key, error)
        except Exception as exc:  # it stays stopped; the error is in the log
            log.warning("telegram poller %s: recording the error failed: %s", self.key, exc)


class PollerRef:
    """A bot's poller, as the API and the sweeper reach it."""

    __slots__ = ("actor",)

    def __init__(self, system: ActorSystem, org_id: str, integration_id: str) -> None:
        self.actor: ActorRef = system.ref(TelegramPoller.kind, org_id, integration_id)

    def wake(self) -> asyncio.Future[Any]:
        """Poll if it should (a tell: resolves once its host has it)."""
        return self.actor.tell(Wake())

    async def stop(self) -> bool:
        return await DEFAULT_POLICY.ask(self.actor, Stop(), idempotent=True)  # type: ignore[no-any-return]

    async def ensure(self) -> bool:
        """Wake it and answer whether it polls."""
        return await DEFAULT_POLICY.ask(self.actor, Wake(), idempotent=True)  # type: ignore[no-any-return]

    async def state(self) -> dict[str, Any]:
        return await DEFAULT_POLICY.ask(self.actor, GetState(), idempotent=True)  # type: ignore[no-any-return]


async def wake_all(db: Database, system: ActorSystem) -> int:
    """Wake the poller of every integration that should be polling, across
    orgs; answers how many were told. A host that is down is told at the
    next round."""
    async with db.system_tx() as conn:
        due = await integrations.polling(conn)
    results = await asyncio.gather(*(PollerRef(system, org, key).wake() for org, key in due),
                                   return_exceptions=True)
    for (_, key), result in zip(due, results, strict=True):
        if isinstance(result, Exception):
            log.warning("poller %s not reachable: %s", key, result)
    return len(due)
