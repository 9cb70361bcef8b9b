"""MailboxPoller: one email integration's IMAP folder, read as it fills.

While the integration is active, its poller holds one IMAP connection:
`SELECT` (read-only) the folder, compare its `UIDVALIDITY` with the stored
one, then fetch `UID n+1:*` with `BODY.PEEK[]` (mail is never marked read)
in rounds bounded by count and bytes; each round is delivered to the chat
actors (`deliver_batch`, resolved after COMMIT) and only then is its last
UID stored in `channel_cursors`. Then `IDLE` until the server reports new
mail, re-issued (and the folder polled for new UIDs, the fallback for
servers whose pushes go missing) every `email_poll_interval` seconds.

A poller that dies anywhere before a round's UID is stored fetches the
round again, and the chats' dedup (the Message-ID in its conversation)
makes that harmless. After downtime it goes on from the stored UID, never
from a date. The first time, it imports the messages of the last
`import_days` days. A changed `UIDVALIDITY` (the server rebuilt the folder:
every UID is new) resyncs: the Message-IDs of the whole folder are read and
only messages not stored yet are fetched.

A message that cannot be stored while Postgres is well (tried alone, twice)
is skipped and shown in the poller's state and the log, so it never blocks
the mailbox. A refused login shows on the integration (its `error`) while
the poller keeps trying, with a longer backoff, and clears when the login
works again; a server that drops us is reconnected with backoff.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from actors import email_batch
from actors.polling import KINDS, ChannelPoller, PollerRef, backoff
from actors.refs import deliver_batch
from channels import email, netguard
from channels.base import sender_for
from channels.email_mime import normalize_message_id
from channels.imap import Fetched, ImapAuthError, ImapError, Mailbox
from core.errors import Invalid
from storage import cursors, email_threads, integrations
from storage.audit import Actor
from storage.integrations import Integration

log = logging.getLogger(__name__)

UID = "email:uid"
VALIDITY = "email:uidvalidity"
LOGIN_BACKOFF = 300.0  # seconds, at most, between logins a server refused
MAX_BACKOFF = 60.0
KEPT_SKIPPED = 50
HEADERS_CHUNK = 500  # Message-IDs read per command during a resync

__all__ = ("MailboxPoller", "PollerRef")


def rounds(sizes: Sequence[tuple[int, int]], most: int, budget: int) -> Iterator[list[int]]:
    """UIDs in rounds of at most `most` messages and `budget` bytes (a
    larger message goes alone)."""
    chunk: list[int] = []
    used = 0
    for uid, size in sizes:
        if chunk and (len(chunk) >= most or used + size > budget):
            yield chunk
            chunk, used = [], 0
        chunk.append(uid)
        used += size
    if chunk:
        yield chunk


class MailboxPoller(ChannelPoller):
    kind = KINDS["email"]
    __slots__ = ("uid", "uidvalidity", "fetched", "skipped", "idling", "login_refused",
                 "attempts")

    async def on_activate(self) -> None:
        await super().on_activate()
        self.fetched = 0
        self.skipped: list[dict[str, Any]] = []
        self.idling = False
        self.login_refused = False
        self.attempts: dict[int, int] = {}  # uid -> failed deliveries of it alone
        async with self.ctx.db.tenant_tx(self.org_id) as conn:
            self.uid = await cursors.get(conn, self.key, UID)
            self.uidvalidity = await cursors.get(conn, self.key, VALIDITY)

    def should_poll(self, integration: Integration | None) -> bool:
        return (integration is not None and integration.type == email.CHANNEL
                and integration.is_active)

    def details(self) -> dict[str, Any]:
        return {"uid": self.uid, "uidvalidity": self.uidvalidity, "fetched": self.fetched,
                "idle": self.idling, "skipped": list(self.skipped)}

    @property
    def connector(self) -> email.EmailConnector:
        # The host's one email connector (reply tokens, the SMTP pool).
        return sender_for(self.ctx, email.CHANNEL)  # type: ignore[return-value]

    # -- the loop ---------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                if not await self._session():
                    return
            except ImapAuthError as exc:
                self._failed(f"imap_login_refused: {exc}")
                if not self.login_refused:
                    self.login_refused = True
                    await self.record_failure(str(self.error))
                delay = backoff(self.failures, cap=LOGIN_BACKOFF)
            except (ImapError, OSError, Invalid) as exc:
                self._failed(f"imap: {exc}")
                delay = backoff(self.failures, cap=MAX_BACKOFF)
            except Exception as exc:  # our side (Postgres, a chat's host): the same round again
                self._failed(f"{type(exc).__name__}: {exc}")
                delay = backoff(self.failures, cap=MAX_BACKOFF)
            self.idling = False
            log.warning("mailbox %s: %s; again in %.1f s", self.key, self.error, delay)
            await asyncio.sleep(delay)
            if not await self.still_polling():
                return

    def _failed(self, error: str) -> None:
        self.failures += 1
        self.error = error

    async def _session(self) -> bool:
        """One connection's life: False when the integration is no longer read."""
        assert self.integration is not None
        settings = self.ctx.settings
        server = email.server_of(self.integration, "imap", settings.email_timeout)
        await netguard.checked_addresses(server.host, server.port,
                                         netguard.Policy.from_settings(settings),
                                         field="config.imap.host")
        box = await Mailbox.open(server)
        try:
            if self.login_refused:
                self.login_refused = False
                async with self.ctx.db.tenant_tx(self.org_id) as conn:
                    await integrations.recovered(conn, Actor(self.org_id), self.key)
            selected = await box.select(email.folder_of(self.integration))
            await self._sync(box, selected.uidvalidity, selected.uidnext)
            self.failures, self.error = 0, None
            while True:
                if not await self.still_polling(force=False):
                    return False
                self.idling = box.has_idle
                if box.has_idle:
                    await box.idle(settings.email_poll_interval)
                else:
                    await asyncio.sleep(settings.email_poll_interval)
                self.idling = False
                await self._after(box, selected.uidvalidity)
        finally:
            await box.close()

    async def _sync(self, box: Mailbox, validity: int, uidnext: int | None) -> None:
        if self.uidvalidity is None:
            await self._import(box, validity, uidnext)
        elif self.uidvalidity != validity:
            log.info("mailbox %s: UIDVALIDITY %s -> %s: resyncing", self.key,
                     self.uidvalidity, validity)
            await self._resync(box, validity)
        await self._after(box, validity)

    async def _import(self, box: Mailbox, validity: int, uidnext: int | None) -> None:
        """A new integration's first look: the last `import_days` days, once."""
        assert self.integration is not None
        days = int(self.integration.config.get("import_days", 7))
        since = (datetime.now(UTC) - timedelta(days=days)).date()
        uids = await box.search_since(since) if days > 0 else []
        await self._fetch(box, validity, await box.sizes(uids) if uids else [])
        last = max([uidnext - 1 if uidnext else 0, *uids, 0])
        await self._store(validity, last)

    async def _resync(self, box: Mailbox, validity: int) -> None:
        assert self.integration is not None
        sizes = await box.sizes_after(0)
        wanted: list[tuple[int, int]] = []
        for start in range(0, len(sizes), HEADERS_CHUNK):
            chunk = sizes[start:start + HEADERS_CHUNK]
            ids = await box.message_ids([uid for uid, _ in chunk])
            keys = {uid: email.key(n) for uid, raw in ids.items()
                    if (n := normalize_message_id(raw)) is not None}
            async with self.ctx.db.tenant_tx(self.org_id) as conn:
                stored = await email_threads.known(conn, self.integration.id,
                                                   list(keys.values()))
            wanted.extend((uid, size) for uid, size in chunk if keys.get(uid) not in stored)
        await self._fetch(box, validity, wanted)
        await self._store(validity, max([0, *(uid for uid, _ in sizes)]))

    async def _after(self, box: Mailbox, validity: int) -> None:
        """Everything after the stored UID, round by round, each stored as done."""
        sizes = await box.sizes_after(self.uid or 0)
        await self._fetch(box, validity, sizes, advance=True)

    async def _fetch(self, box: Mailbox, validity: int, sizes: Sequence[tuple[int, int]],
                     advance: bool = False) -> None:
        settings = self.ctx.settings
        for uids in rounds(sizes, settings.email_batch_messages, settings.email_batch_bytes):
            fetched = await box.fetch(uids, max_bytes=settings.email_max_message_bytes)
            await self._deliver(fetched, validity)
            self.fetched += len(fetched)
            if advance:
                await self._store(validity, max(uids))

    async def _store(self, validity: int, uid: int) -> None:
        async with self.ctx.db.tenant_tx(self.org_id) as conn:
            await cursors.put(conn, self.org_id, self.key, VALIDITY, validity)
            await cursors.put(conn, self.org_id, self.key, UID, uid)
            await integrations.synced(conn, self.key)
        self.uidvalidity, self.uid = validity, uid

    # -- delivering -------------------------------------------------------

    async def _deliver(self, fetched: Sequence[Fetched], validity: int) -> None:
        """A round to the chats; when it fails and Postgres is well, each
        message alone, so that one bad message is skipped, not retried forever."""
        assert self.integration is not None
        try:
            await self._deliver_built(fetched, validity)
            return
        except Exception as exc:
            if len(fetched) == 1 and not await self._healthy():
                raise
            log.warning("mailbox %s: a round of %d failed (%s); one by one", self.key,
                        len(fetched), exc)
        for item in fetched:
            try:
                await self._deliver_built([item], validity)
                self.attempts.pop(item.uid, None)
            except Exception as exc:
                if not await self._healthy():
                    raise
                self.attempts[item.uid] = self.attempts.get(item.uid, 0) + 1
                if self.attempts[item.uid] < 2:
                    raise  # tried again with the next round, after a backoff
                self.attempts.pop(item.uid, None)
                self._skip(email_batch.Skipped(item.uid, f"not stored: {type(exc).__name__}:"
                                                         f" {exc}"))

    async def _deliver_built(self, fetched: Sequence[Fetched], validity: int) -> None:
        assert self.integration is not None
        built = await email_batch.build(self.ctx, self.connector, self.integration, fetched,
                                        validity)
        for skipped in built.skipped:
            self._skip(skipped)
        for note in built.batch.ignored:
            log.info("mailbox %s: ignored %s", self.key, note)
        await deliver_batch(self.ctx.system, built.batch)  # resolves after COMMIT

    def _skip(self, skipped: email_batch.Skipped) -> None:
        log.error("mailbox %s: uid %s skipped: %s", self.key, skipped.uid, skipped.reason)
        self.skipped.append({"uid": skipped.uid, "reason": skipped.reason[:500],
                             "at": datetime.now(UTC).isoformat()})
        del self.skipped[:-KEPT_SKIPPED]

    async def _healthy(self) -> bool:
        try:
            await self.ctx.db.ping()
        except Exception:
            return False
        return True
