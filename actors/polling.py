"""What the channel pollers share: one integration's loop run outside the
actor's turns, woken and stopped by the API and the sweeper.

A poller (actors.poller: a Telegram bot's getUpdates; actors.mailbox: an
IMAP mailbox) is a virtual actor keyed by its integration's id, so placement
gives one activation per integration in the cluster. While its integration
should be read, it runs one task; `Wake` starts it (a no-op while it runs),
`Stop` cancels it. `wake_all` (run by the outbox sweeper every few seconds)
wakes the poller of every integration that should be read, which restarts
one whose host restarted. The loop re-reads its integration every
`RELOAD_EVERY` seconds and stops when it no longer should run.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import msgspec

from actors.messages import GetState
from actors.runtime.actor import VirtualActor, on
from actors.runtime.client import ActorRef, ActorSystem
from actors.runtime.retry import DEFAULT_POLICY
from channels.base import MAX_RETRY_AFTER, integration_loader
from storage import integrations
from storage.audit import Actor
from storage.db import Database
from storage.integrations import Integration

log = logging.getLogger(__name__)

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
RELOAD_EVERY = 30.0  # seconds between re-reads of the integration while polling

# The poller kind of each channel that is read by polling.
KINDS = {"telegram": "telegram-poller", "email": "mailbox-poller"}


class Wake(msgspec.Struct, frozen=True):
    """Poll if the integration should be read (re-read now, unless the
    poller is polling already); answers whether it polls."""


class Stop(msgspec.Struct, frozen=True):
    """Stop polling (the integration changed mode, or was switched off or
    deleted); answers whether it was polling."""


def backoff(failures: int, retry_after: float | None = None,
            rng: random.Random | None = None, cap: float = MAX_BACKOFF) -> float:
    """Seconds before the next attempt after `failures` failures in a row:
    the provider's `retry_after` when it gave one, else a jittered
    exponential step capped at `cap`."""
    if retry_after is not None:
        return max(0.0, min(retry_after, MAX_RETRY_AFTER))
    step = min(FIRST_BACKOFF * 2.0 ** max(failures - 1, 0), cap)
    return step * (1.0 - 0.25 * (rng or random).random())


class ChannelPoller(VirtualActor):
    """The base of a channel's poller: the task, its turns, the integration."""

    __slots__ = ("integration", "task", "error", "failures", "reloaded")

    async def on_activate(self) -> None:
        self.integration: Integration | None = None
        self.task: asyncio.Task[None] | None = None
        self.error: str | None = None  # the last failure, retryable or not
        self.failures = 0
        self.reloaded = 0.0

    def should_poll(self, integration: Integration | None) -> bool:
        raise NotImplementedError

    async def run(self) -> None:
        """The loop: returns when the integration no longer should be read."""
        raise NotImplementedError

    def details(self) -> dict[str, Any]:
        """What the poller's state says beyond the common part."""
        return {}

    def can_passivate(self) -> bool:
        return not self.polling

    async def on_deactivate(self) -> None:
        await self._cancel()

    @property
    def polling(self) -> bool:
        return self.task is not None and not self.task.done()

    async def load(self) -> Integration | None:
        loader = self.ctx.loader("integration", lambda: integration_loader(self.ctx))
        self.reloaded = asyncio.get_running_loop().time()
        found: Integration | None = await loader.load((self.org_id, self.key))
        return found

    @on(Wake)
    async def wake(self, _: Wake) -> bool:
        if self.polling:
            return True
        integration = await self.load()
        if not self.should_poll(integration):
            return False
        self.integration, self.failures, self.error = integration, 0, None
        self.task = asyncio.create_task(self.run(), name=f"{self.kind} {self.key}")
        return True

    @on(Stop)
    async def stop(self, _: Stop) -> bool:
        was = self.polling
        await self._cancel()
        return was

    @on(GetState)
    def state(self, _: GetState) -> dict[str, Any]:
        return {"integration_id": self.key, "polling": self.polling,
                "failures": self.failures, "error": self.error, **self.details()}

    async def _cancel(self) -> None:
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def still_polling(self, force: bool = True) -> bool:
        """Re-read the integration (with `force`, or when RELOAD_EVERY has
        passed): whether it should still be read."""
        if not force and asyncio.get_running_loop().time() - self.reloaded <= RELOAD_EVERY:
            return True
        integration = await self.load()
        if not self.should_poll(integration):
            log.info("%s %s: no longer to be read; stopping", self.kind, self.key)
            return False
        self.integration = integration
        return True

    async def record_failure(self, error: str) -> None:
        """Show `error` on the integration (GET /v1/integrations/{id})."""
        try:
            async with self.ctx.db.tenant_tx(self.org_id) as conn:
                await integrations.failed(conn, Actor(self.org_id), self.key, error[:500])
        except Exception as exc:  # the error is in the log and the state
            log.warning("%s %s: recording the error failed: %s", self.kind, self.key, exc)


class PollerRef:
    """An integration's poller, as the API and the sweeper reach it."""

    __slots__ = ("actor",)

    def __init__(self, system: ActorSystem, org_id: str, integration_id: str,
                 kind: str = KINDS["telegram"]) -> None:
        self.actor: ActorRef = system.ref(kind, org_id, integration_id)

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
    """Wake the poller of every integration that should be read, across
    orgs; answers how many were told. A host that is down is told at the
    next round."""
    async with db.system_tx() as conn:
        due = await integrations.polling(conn)
    results = await asyncio.gather(
        *(PollerRef(system, org, key, KINDS[channel]).wake() for org, key, channel in due),
        return_exceptions=True)
    for (_, key, _channel), result in zip(due, results, strict=True):
        if isinstance(result, Exception):
            log.warning("poller %s not reachable: %s", key, result)
    return len(due)
