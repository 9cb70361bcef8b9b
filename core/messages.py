"""The messages every channel produces and consumes (hot path: msgspec).

`InboundMessage.dedup_key` is what makes redelivery harmless: the same
provider message always maps to the same key, stored as
`messages.external_id` under a unique `(chat_id, external_id)`.
"""
from __future__ import annotations

from datetime import datetime

import msgspec


class Attachment(msgspec.Struct, frozen=True, omit_defaults=True):
    url: str
    name: str | None = None
    mime_type: str | None = None
    size: int | None = None


class Sender(msgspec.Struct, frozen=True, omit_defaults=True):
    """Who wrote it, as the channel knows them."""

    id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    username: str | None = None


class InboundMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    organization_id: str
    integration_id: str
    channel: str  # api, telegram, whatsapp, email
    thread_id: str  # the external conversation
    external_id: str  # the provider's message id, unique per thread
    sender: Sender
    text: str
    sent_at: datetime | None = None
    received_at: datetime | None = None
    attachments: tuple[Attachment, ...] = ()
    reply_to_external_id: str | None = None

    @property
    def dedup_key(self) -> str:
        return f"{self.channel}:{self.integration_id}:{self.thread_id}:{self.external_id}"


class OutboundMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    organization_id: str
    integration_id: str
    channel: str
    thread_id: str
    message_id: str  # ours: messages.id
    chat_id: str
    text: str
    attachments: tuple[Attachment, ...] = ()
    reply_to_external_id: str | None = None


class Receipt(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a channel's send() returns: the provider's id for our message."""

    external_id: str
    sent_at: datetime | None = None
