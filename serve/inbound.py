"""What channel webhooks share in the ingress: finding the integration a
request names (any org: the URL carries only its id) with a short cache, and
handing the parsed message to its chat actor (`actors.refs.ChatRef`, which
retries while the owning host restarts: dedup keys make that harmless).

The webhook is unauthenticated until its signature is checked, which needs
the integration: posts naming unknown ids must not each cost a query of the
owner pool that sign-in also uses. Unknown ids are remembered for
`MISSING_SECONDS`, concurrent lookups of one id share one query, and at most
`LOADS_AT_ONCE` queries run at once. Ids are server-generated random UUIDs,
so an id can only be remembered as unknown if someone probed it before it
existed: then its webhook answers 404 for up to `MISSING_SECONDS` after the
integration is created."""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from actors.refs import Accepted, ChatRef, deliver_batch
from actors.runtime.client import ActorSystem
from core.crypto import Cipher
from core.errors import NotFound
from core.messages import Batch, InboundMessage, StatusUpdate
from serve.replica import kept
from storage import integrations, statuses
from storage.chats import chat_id_for
from storage.committer import GroupCommitter, Write
from storage.db import Database
from storage.integrations import Integration

CACHE_SECONDS = 5.0  # a rotated secret or a deactivation applies within this
MISSING_SECONDS = 30.0
CACHE_SIZE = 10_000  # entries of each kind, found and missing
LOADS_AT_ONCE = 2  # of the owner pool's connections, at most


@dataclass
class IntegrationCache:
    db: Database
    cipher: Cipher
    ttl: float = CACHE_SECONDS
    missing_ttl: float = MISSING_SECONDS
    size: int = CACHE_SIZE
    loads: int = 0  # queries made: what the cache saves is visible
    _found: OrderedDict[str, tuple[float, Integration]] = field(default_factory=OrderedDict)
    _missing: OrderedDict[str, float] = field(default_factory=OrderedDict)
    _loading: dict[str, asyncio.Task[Integration | None]] = field(default_factory=dict)
    _slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(LOADS_AT_ONCE))

    async def get(self, integration_id: str, channel: str) -> Integration:
        integration = await self._lookup(integration_id)
        if integration is None or integration.type != channel or not integration.is_active:
            raise NotFound("integration not found")
        return integration

    async def _lookup(self, integration_id: str) -> Integration | None:
        now = time.monotonic()
        found = self._found.get(integration_id)
        if found is not None and now - found[0] <= self.ttl:
            return found[1]
        missing_since = self._missing.get(integration_id)
        if missing_since is not None and now - missing_since <= self.missing_ttl:
            return None
        task = self._loading.get(integration_id)
        if task is None:
            # One query for every concurrent caller; a caller that goes away
            # does not cancel it for the others.
            task = asyncio.get_running_loop().create_task(self._load(integration_id))
            self._loading[integration_id] = task
            task.add_done_callback(lambda _: self._loading.pop(integration_id, None))
        return await asyncio.shield(task)

    async def _load(self, integration_id: str) -> Integration | None:
        async with self._slots:
            self.loads += 1
            async with self.db.system_tx() as conn:
                integration = await integrations.find(conn, integration_id, self.cipher)
        now = time.monotonic()
        self._found.pop(integration_id, None)
        self._missing.pop(integration_id, None)
        if integration is None:
            _put(self._missing, integration_id, now, self.size)
        else:
            _put(self._found, integration_id, (now, integration), self.size)
        return integration


def _put(entries: OrderedDict[str, Any], key: str, value: Any, size: int) -> None:
    entries[key] = value
    while len(entries) > size:
        entries.popitem(last=False)  # the oldest


async def deliver(actors: ActorSystem, message: InboundMessage) -> Accepted:
    """Hand `message` to its chat actor; resolves after COMMIT."""
    return await ChatRef.of(actors, message).inbound(message)


def status_committer(state: Any) -> GroupCommitter:
    """This replica's group committer for provider statuses (made on first
    use, closed with the app)."""
    return kept(state, "status_committer", lambda: GroupCommitter(state.runtime.db))


async def apply_statuses(state: Any, updates: tuple[StatusUpdate, ...]) -> None:
    """Commit the provider's statuses of our messages; resolves after COMMIT.

    A status needs none of a chat's state: it moves its message forward only
    (the statement's guard), whoever writes it, so the ingress commits them
    itself, many requests' in one transaction, instead of one actor call per
    chat. Only a status that moved nothing goes on to its chat actor: its
    message's receipt may still be on its way (the chat holds such statuses
    until it comes), or it is a redelivery, which changes nothing there either."""
    by_org: dict[str, list[tuple[StatusUpdate, Write]]] = {}
    for update in updates:
        if update.thread_id is None:
            continue  # no conversation named: nothing to find it by
        write = statuses.provider_status_write(update.organization_id, chat_id_for(update),
                                               update)
        by_org.setdefault(update.organization_id, []).append((update, write))
    committer = status_committer(state)
    await asyncio.gather(*(committer.commit(org, [w for _, w in items])
                           for org, items in by_org.items()))
    missed = tuple(u for items in by_org.values() for u, w in items if not w.inserted)
    if missed:
        await deliver_batch(state.runtime.actors, Batch(statuses=missed))
