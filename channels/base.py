"""What every channel shares: the sender interface, errors, and the per-host
registry of senders and integration loaders that chat actors use."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from core.crypto import Cipher
from core.errors import BidiError
from core.messages import OutboundMessage, Receipt
from storage.integrations import COLUMNS, Integration, from_row
from storage.loader import BatchLoader

Key = tuple[str, str]  # (org_id, integration_id)


class ChannelError(BidiError):
    """A send that did not (and will not, after retries) reach the provider."""


class Sender(Protocol):
    async def send(self, integration: Integration, message: OutboundMessage) -> Receipt: ...


def integration_loader(ctx: Any) -> BatchLoader[Key, Integration]:
    """Integrations by (org, id), batched, decrypted with this host's key."""
    cipher = Cipher(ctx.settings.encryption_key.get_secret_value())

    async def fetch(keys: Sequence[Key]) -> dict[Key, Integration]:
        by_org: dict[str, list[str]] = {}
        for org_id, integration_id in keys:
            by_org.setdefault(org_id, []).append(integration_id)
        found: dict[Key, Integration] = {}
        for org_id, ids in by_org.items():
            async with ctx.db.tenant_tx(org_id) as conn:
                rows = await conn.fetch(
                    f"SELECT {COLUMNS} FROM integrations WHERE id = ANY($1::uuid[])", ids)
            for row in rows:
                found[(org_id, str(row["id"]))] = from_row(row, cipher)
        return found

    return BatchLoader(fetch)


def sender_for(ctx: Any, channel: str) -> Sender:
    """This host's sender for `channel` (one HTTP client per channel per host)."""
    if channel == "api":
        from channels.api import ApiChannel

        return ctx.loader("sender:api", ApiChannel)  # type: ignore[no-any-return]
    raise ChannelError(f"no outbound sender for channel {channel!r}")
