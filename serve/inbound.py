"""What channel webhooks share in the ingress: finding the integration a
request names (any org: the URL carries only its id) with a short cache, and
handing the parsed message to its chat actor, retried while the owning host
restarts (dedup keys make the retry harmless)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from actors.chat import Inbound
from actors.chat_store import chat_id_for
from actors.runtime.client import ActorSystem, retrying
from core.crypto import Cipher
from core.errors import NotFound
from core.messages import InboundMessage
from storage import integrations
from storage.db import Database
from storage.integrations import Integration

CACHE_SECONDS = 5.0  # a rotated secret or a deactivation applies within this


@dataclass
class IntegrationCache:
    db: Database
    cipher: Cipher
    ttl: float = CACHE_SECONDS
    _entries: dict[str, tuple[float, Integration | None]] = field(default_factory=dict)

    async def get(self, integration_id: str, channel: str) -> Integration:
        now = time.monotonic()
        entry = self._entries.get(integration_id)
        if entry is None or now - entry[0] > self.ttl:
            async with self.db.system_tx() as conn:
                found = await integrations.find(conn, integration_id, self.cipher)
            entry = self._entries[integration_id] = (now, found)
            if len(self._entries) > 10_000:
                self._entries.pop(next(iter(self._entries)))
        integration = entry[1]
        if integration is None or integration.type != channel or not integration.is_active:
            raise NotFound("integration not found")
        return integration


async def deliver(actors: ActorSystem, message: InboundMessage) -> dict[str, Any]:
    """Hand `message` to its chat actor; resolves after COMMIT."""
    chat_id = chat_id_for(message)
    return await retrying(  # type: ignore[no-any-return]
        lambda: actors.ask("chat", message.organization_id, chat_id, Inbound(message)))
