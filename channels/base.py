"""What every channel shares: the connector shape, errors, the retry
schedule of outbound sends, and the per-host registry of senders and
integration loaders that chat actors use.

A connector speaks one provider's protocol and nothing else: no database,
no business rules (the chat actor decides). Inbound, a webhook connector
verifies a request on its raw bytes and parses it into a `Batch`
(messages, edits, statuses, thread states, each with its dedup key); a
polling connector fetches the next `Batch` after a cursor. Outbound, it
sends an `OutboundMessage` and returns the provider's id in a `Receipt`,
or raises `ChannelError` (retryable, with the provider's delay, or final).
Every connector takes an `api_base_url`, so it can point at a self-hosted
server or at a test fake."""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import msgspec

from core.crypto import Cipher
from core.errors import Invalid, MalformedJSON, ProviderError
from core.messages import Batch, OutboundMessage, Receipt
from storage.integrations import COLUMNS, Integration, from_row
from storage.loader import BatchLoader

Key = tuple[str, str]  # (org_id, integration_id)


JITTER = 0.2  # each delay is drawn from +-20% of the schedule's step
MAX_RETRY_AFTER = 86_400.0  # a provider's Retry-After is honoured up to a day


class ChannelError(ProviderError):
    """A send that did not reach the provider. `retryable`: the same send may
    work later (network error, 408, 429, 5xx); `retry_after`: the provider's
    own hint, in seconds; `unreachable`: the recipient is gone for good (a
    blocked bot), so the conversation refuses further sends."""

    def __init__(self, message: str, *, retryable: bool = False,
                 retry_after: float | None = None, unreachable: bool = False,
                 reason: str | None = None, sent_parts: int = 0) -> None:
        super().__init__(message)
        self.sent_parts = sent_parts  # parts of a split text that did go out
        self.retryable = retryable
        self.retry_after = retry_after
        self.unreachable = unreachable
        self.reason = reason  # the provider's kind of refusal (CREDENTIALS_REFUSED, ...)


# Reasons a caller acts on: the integration itself no longer works (not
# this send); the provider serves someone else for it (Telegram: a webhook
# set, or another client polling the bot); the provider's messaging window
# with the recipient is closed (WhatsApp's 24 hours: only a template may go).
CREDENTIALS_REFUSED = "credentials_refused"
CONFLICT = "conflict"
WINDOW_CLOSED = "window_closed"


BASE_URL_MESSAGE = "api_base_url must be an http(s) URL without query or fragment"


def server_root(url: str | None, default: str) -> str:
    """A provider API's root (`default` when not given), without a trailing
    slash; `Invalid` for anything but a plain http(s) URL."""
    if url is None:
        return default
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
            or parts.fragment or parts.username or parts.password:
        raise Invalid(BASE_URL_MESSAGE, field="config.api_base_url")
    return url.rstrip("/")


def decode_json(body: bytes) -> Any:
    """A webhook body as JSON; `MalformedJSON` when it is not."""
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise MalformedJSON(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise MalformedJSON("the body is JSON nested too deeply") from None


def retry_delay(schedule: Sequence[float], attempts: int, retry_after: float | None = None,
                rng: random.Random | None = None) -> float | None:
    """Seconds to wait before the next attempt after `attempts` have failed,
    or None when the schedule is spent. The step is jittered so that many
    sends failing together do not come back together; a larger Retry-After
    wins."""
    if attempts >= len(schedule):
        return None
    step = schedule[attempts] * (1 + (rng or random).uniform(-JITTER, JITTER))
    if retry_after is not None:
        step = max(step, min(retry_after, MAX_RETRY_AFTER))
    return max(0.0, step)


class Sender(Protocol):
    async def send(self, integration: Integration, message: OutboundMessage) -> Receipt: ...


class WebhookConnector(Sender, Protocol):
    def verify(self, integration: Integration, headers: Mapping[str, str],
               body: bytes) -> None:
        """Raise `Unauthorized` unless the request is the provider's (on the raw body)."""

    def parse(self, integration: Integration, body: bytes) -> Batch:
        """The verified body as a `Batch`; `MalformedJSON` / `Invalid` when it is not one."""


class PollingConnector(Sender, Protocol):
    async def poll(self, integration: Integration, cursor: str | None,
                   timeout: float) -> tuple[Batch, str | None]:
        """The next batch after `cursor` (waiting up to `timeout` s for one),
        and the cursor to store once the batch is committed."""


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
        from channels.netguard import Policy

        return ctx.loader(  # type: ignore[no-any-return]
            "sender:api", lambda: ApiChannel(Policy.from_settings(ctx.settings)))
    if channel == "telegram":
        from channels.telegram import TelegramConnector
        from storage.pacing import TelegramPacer

        return ctx.loader(  # type: ignore[no-any-return]
            "sender:telegram", lambda: TelegramConnector(
                pacer=TelegramPacer.from_settings(ctx.redis, ctx.settings)))
    if channel == "whatsapp":
        from channels.whatsapp import WhatsAppConnector
        from storage.pacing import WhatsAppPacer

        return ctx.loader(  # type: ignore[no-any-return]
            "sender:whatsapp", lambda: WhatsAppConnector(
                pacer=WhatsAppPacer.from_settings(ctx.redis, ctx.settings)))
    if channel == "email":
        from channels.email import EmailConnector

        def email() -> EmailConnector:
            settings = ctx.settings
            secret = Cipher(settings.encryption_key.get_secret_value()).derive(b"email-reply")
            return EmailConnector(secret, timeout=settings.email_timeout,
                                  smtp_connections=settings.email_smtp_connections)

        return ctx.loader("sender:email", email)  # type: ignore[no-any-return]
    raise ChannelError(f"no outbound sender for channel {channel!r}")
