"""The messages every channel produces and consumes (hot path: msgspec).

`InboundMessage.dedup_key` is what makes redelivery harmless: the same
provider message always maps to the same key, stored as
`messages.external_id` under a unique `(chat_id, external_id)`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Attachment(msgspec.Struct, frozen=True, omit_defaults=True):
    url: str  # where the file is (ours once fetched; `<channel>-file:<id>` until then)
    name: str | None = None
    mime_type: str | None = None
    size: int | None = None
    kind: str | None = None  # photo, document, voice, audio, video, sticker, ...
    provider_id: str | None = None  # the provider's file id (Telegram file_id, WhatsApp media id)
    # Already in the data dir (`url` relative to it: an email's parts come
    # with the message), or why it never will be (too large, cut off).
    stored: bool = False
    error: str | None = None


class Sender(msgspec.Struct, frozen=True, omit_defaults=True):
    """Who wrote it, as the channel knows them."""

    id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    username: str | None = None
    # Other ids of the same person on this channel (WhatsApp: the
    # business-scoped user id beside the wa_id): their contact is this one.
    aliases: tuple[str, ...] = ()


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
    thread_title: str | None = None  # a group's title
    thread_kind: str | None = None  # private, group, supergroup, channel (as the provider says)
    # What the text alone does not say, kept on the message's metadata:
    # {"type": ...} and the provider's structured parts (a location, shared
    # contacts, the id of the button pressed, an unsupported type's errors).
    data: dict[str, Any] | None = None
    # The whole text when `text` is a trimmed view of it (email: quoted
    # replies and signature cut); kept on the message, not in its events.
    body: str | None = None

    @property
    def dedup_key(self) -> str:
        return f"{self.channel}:{self.integration_id}:{self.thread_id}:{self.external_id}"


class MessageEdit(msgspec.Struct, frozen=True, omit_defaults=True):
    """A new revision of a message already received (its history is kept)."""

    organization_id: str
    integration_id: str
    channel: str
    thread_id: str
    external_id: str  # the edited message's id
    sender: Sender
    text: str
    edited_at: datetime | None = None
    attachments: tuple[Attachment, ...] = ()


class StatusUpdate(msgspec.Struct, frozen=True, omit_defaults=True):
    """The provider's news about one of our outbound messages."""

    organization_id: str
    integration_id: str
    channel: str
    external_id: str  # the provider's id for our message (Receipt.external_id)
    status: str  # sent, delivered, read, failed
    thread_id: str | None = None  # the conversation it was sent to, when the provider says
    at: datetime | None = None
    error_code: str | None = None
    error_title: str | None = None


class Reaction(msgspec.Struct, frozen=True, omit_defaults=True):
    """Someone's reaction to a message of the conversation (theirs or ours):
    kept on that message, not as a message. An empty `emoji` takes it back."""

    organization_id: str
    integration_id: str
    channel: str
    thread_id: str
    external_id: str  # the provider's id of the message reacted to
    reaction_id: str  # the provider's id of the reaction itself (its dedup key)
    sender: Sender
    emoji: str
    at: datetime | None = None


class ThreadState(msgspec.Struct, frozen=True, omit_defaults=True):
    """Whether we may still write to a conversation (a bot blocked, a user gone)."""

    organization_id: str
    integration_id: str
    channel: str
    thread_id: str
    reachable: bool
    reason: str | None = None


class Batch(msgspec.Struct, frozen=True, omit_defaults=True):
    """What one provider request or poll carried, parsed; stored together."""

    messages: tuple[InboundMessage, ...] = ()
    edits: tuple[MessageEdit, ...] = ()
    statuses: tuple[StatusUpdate, ...] = ()
    reactions: tuple[Reaction, ...] = ()
    states: tuple[ThreadState, ...] = ()
    ignored: tuple[str, ...] = ()  # what it carried that we do not handle (logged)


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
    # A provider's approved template instead of free text (WhatsApp:
    # {"name", "language", "components"}); `text` is then what the inbox shows.
    template: dict[str, Any] | None = None
    sent_parts: int = 0  # parts of a split text the provider has already (a retry skips them)
    # What the channel needs from the conversation to write in it (email:
    # whom to answer, the subject, the Message-IDs to refer to), read by the
    # chat from its thread.
    context: dict[str, Any] | None = None


class Receipt(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a channel's send() returns: the provider's id for our message."""

    external_id: str
    sent_at: datetime | None = None
    # Whether no other message of the conversation, ours or theirs, can have
    # this id at the provider (Telegram's per-chat sequence, WhatsApp's
    # wamids): then it becomes the message's `external_id`, by which the
    # provider's later statuses and reactions find it. An API-channel
    # receiver's ids promise nothing of the kind.
    unique_in_thread: bool = False
    # What the provider said of the message, kept on it (email: its headers,
    # the SMTP server's reply).
    data: dict[str, Any] | None = None
