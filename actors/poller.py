"""TelegramPoller: one bot's long polling (a Telegram integration in
`polling` mode), keyed by the integration's id.

While the integration is active and in polling mode, its poller runs one
loop, outside its turns: `getUpdates` after the last offset (a long
poll), the batch to the chat actors (`deliver_batch`, which resolves after
COMMIT), then the new offset into `channel_cursors`, then the connector's
`settle` (callback queries answered). Telegram forgets updates only when a
later `getUpdates` names a higher offset, so a poller that dies anywhere
before that fetches the same updates again, and the chats' dedup keys make
that harmless: nothing is lost, nothing is stored twice.

The offset is stored after each batch that empties the queue (fewer than
`POLL_LIMIT` updates) and, while a backlog is read in full batches, once
every `STORE_EVERY` seconds: every `getUpdates` still names the latest
offset, and a stored offset that lags only means updates already committed
may be fetched again after a restart (and dedup). A write per batch was 8%
of a round of 100 updates (bench/telegram.py).

Failures: a retryable one (network, 5xx, 429 with its `retry_after`, 409
when a webhook is set or another client polls) waits and goes on, backing
off up to `MAX_BACKOFF`; a 409 also re-reads the integration, which may have
changed mode. A final one (the token refused) stops the loop and records
the error on the integration, shown by the API until the integration is
switched off and on or changes mode.

Placement, waking and stopping are every poller's (actors.polling).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from actors.polling import MAX_BACKOFF, ChannelPoller, PollerRef, backoff
from actors.refs import deliver_batch
from channels.base import CONFLICT, ChannelError, sender_for
from channels.telegram import CHANNEL, POLL_LIMIT, TelegramConnector
from core.messages import Batch
from core.timings import TIMINGS
from storage import cursors, integrations
from storage.integrations import Integration

__all__ = ("CURSOR", "MAX_BACKOFF", "POLL_TIMEOUT", "PollerRef", "TelegramPoller", "backoff")

log = logging.getLogger(__name__)

CURSOR = "telegram:offset"
POLL_TIMEOUT = 25.0  # seconds a getUpdates waits for updates (Telegram allows 50)
STORE_EVERY = 1.0  # seconds between offset writes while full batches come


class TelegramPoller(ChannelPoller):
    kind = "telegram-poller"
    __slots__ = ("cursor", "polls", "stored", "stored_at")

    async def on_activate(self) -> None:
        await super().on_activate()
        self.cursor: str | None = None
        self.polls = 0
        async with self.ctx.db.tenant_tx(self.org_id) as conn:
            position = await cursors.get(conn, self.key, CURSOR)
        self.cursor = None if position is None else str(position)
        self.stored, self.stored_at = self.cursor, 0.0  # what channel_cursors holds, since

    async def on_deactivate(self) -> None:
        await super().on_deactivate()
        if self.cursor != self.stored:  # what a backlog left unwritten
            try:
                await self._store()
            except Exception as exc:  # lagging is safe: see the module's note
                log.warning("telegram poller %s: storing the offset failed: %s", self.key, exc)

    def should_poll(self, integration: Integration | None) -> bool:
        return (integration is not None and integration.type == CHANNEL
                and integration.is_active and integration.error is None
                and integration.config.get("mode") == "polling")

    def details(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "stored_cursor": self.stored, "polls": self.polls}

    @property
    def connector(self) -> TelegramConnector:
        # The host's one Telegram connector (one HTTP client per bot, the
        # pacer), shared with the chats' sends.
        return sender_for(self.ctx, CHANNEL)  # type: ignore[return-value]

    async def run(self) -> None:
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
                    log.error("telegram poller %s: stopped: %s", self.key, exc)
                    await self.record_failure(str(exc))
                    return
                delay = backoff(self.failures, exc.retry_after)
                log.warning("telegram poller %s: %s; next getUpdates in %.1f s",
                            self.key, exc, delay)
                # A webhook set meanwhile answers 409: the mode may have changed.
                if exc.reason == CONFLICT and not await self.still_polling():
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
        if not await self.still_polling(force=False):
            return False
        assert self.integration is not None
        started = time.perf_counter()
        batch, cursor = await self.connector.poll(self.integration, self.cursor,
                                                  timeout=POLL_TIMEOUT)
        fetched = time.perf_counter()
        self.polls += 1
        await deliver_batch(self.ctx.system, batch)  # resolves after COMMIT
        delivered = time.perf_counter()
        if batch.messages or batch.edits or batch.states:  # not an empty long poll
            TIMINGS.observe("poll_fetch", fetched - started)
            TIMINGS.observe("poll_deliver", delivered - fetched)
        if cursor is not None and cursor != self.cursor:
            self.cursor = cursor  # confirmed to Telegram by the next getUpdates
        backlog = _updates_in(batch) >= POLL_LIMIT  # more waiting: the next call is at once
        if self.cursor != self.stored and (
                not backlog or time.monotonic() - self.stored_at >= STORE_EVERY):
            await self._store()
            TIMINGS.observe("poll_cursor", time.perf_counter() - delivered)
        await self.connector.settle(self.integration, batch)
        return True

    async def _store(self) -> None:
        position = self.cursor
        if position is None:
            return
        async with self.ctx.db.tenant_tx(self.org_id) as conn:
            await cursors.put(conn, self.org_id, self.key, CURSOR, int(position))
            await integrations.synced(conn, self.key)
        self.stored, self.stored_at = position, time.monotonic()


def _updates_in(batch: Batch) -> int:
    """How many updates a poll carried: each is one message, edit, state or
    ignored entry of its batch."""
    return len(batch.messages) + len(batch.edits) + len(batch.states) + len(batch.ignored)
