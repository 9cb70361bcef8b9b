"""Telegram Bot API updates as a `Batch` (pure: no I/O).

The raw Update dicts are read here rather than through PTB's
`Update.de_json`, which drops fields it does not know and raises on shapes
it does not expect: a webhook must turn whatever Telegram sends into a batch
or a clear `Invalid`, never a 500. Shapes follow core.telegram.org/bots/api.

Strings lose their NUL characters (Postgres text cannot hold them, and
Telegram never sends them in a real update); texts are kept whole however
long (only outbound text is split)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from channels.base import decode_json
from core.errors import Invalid
from core.messages import (
    Attachment,
    Batch,
    InboundMessage,
    MessageEdit,
    Sender,
    ThreadState,
)

CHANNEL = "telegram"
CALLBACK_PREFIX = "cb:"  # a callback query's external id; message ids are digits only
# What setWebhook / getUpdates ask for: everything parsed below, nothing else.
ALLOWED_UPDATES = ("message", "edited_message", "channel_post", "edited_channel_post",
                   "callback_query", "my_chat_member")
INT64 = 2**63
GONE = frozenset({"kicked", "left"})
# File kinds a message may carry, in the order they are looked for. An
# animation also comes with a `document` copy (for old clients): skip it.
FILE_KINDS = ("animation", "document", "voice", "audio", "video", "video_note", "sticker")
FILE_KEYS = frozenset(("photo", *FILE_KINDS))


def _str(value: Any) -> str | None:
    if isinstance(value, str):
        return value.replace("\x00", "")
    return None


def _int(value: Any) -> int | None:
    # bool is an int in Python, never in a Telegram id; every id and date fits 64 bits
    if isinstance(value, int) and not isinstance(value, bool) and -INT64 <= value < INT64:
        return value
    return None


def _dict(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, dict) else None


def _time(value: Any) -> datetime | None:
    seconds = _int(value)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def decode(body: bytes) -> Mapping[str, Any]:
    """One webhook body: an Update object with an integer `update_id`."""
    update = decode_json(body)
    return check(update)


def check(update: Any) -> Mapping[str, Any]:
    if not isinstance(update, dict):
        raise Invalid("a Telegram update is a JSON object")
    if _int(update.get("update_id")) is None:
        raise Invalid("a Telegram update has an integer update_id", field="update_id")
    return update


def thread_of(message: Mapping[str, Any]) -> str | None:
    """The conversation a message belongs to: its chat, or a forum topic of it."""
    chat = _dict(message.get("chat"))
    chat_id = _int(chat.get("id")) if chat else None
    if chat_id is None:
        return None
    topic = _int(message.get("message_thread_id"))
    if message.get("is_topic_message") is True and topic is not None:
        return f"{chat_id}:{topic}"
    return str(chat_id)


def _user(user: Mapping[str, Any]) -> Sender | None:
    user_id = _int(user.get("id"))
    if user_id is None:
        return None
    name = " ".join(p for p in (_str(user.get("first_name")), _str(user.get("last_name"))) if p)
    return Sender(id=str(user_id), name=name or None, username=_str(user.get("username")))


def _chat_as_sender(chat: Mapping[str, Any]) -> Sender | None:
    chat_id = _int(chat.get("id"))
    if chat_id is None:
        return None
    return Sender(id=str(chat_id), name=_str(chat.get("title")) or None,
                  username=_str(chat.get("username")))


def sender_of(message: Mapping[str, Any]) -> Sender | None:
    """The author: `from`, else (channel posts, anonymous admins) the chat
    that speaks, else the chat itself."""
    user = _dict(message.get("from"))
    if user is not None and (sender := _user(user)) is not None:
        return sender
    chat = _dict(message.get("sender_chat")) or _dict(message.get("chat"))
    return _chat_as_sender(chat) if chat is not None else None


def _file(kind: str, item: Mapping[str, Any], mime_type: str | None = None) -> Attachment | None:
    file_id = _str(item.get("file_id"))
    if not file_id:
        return None
    return Attachment(url=f"telegram-file:{file_id}", provider_id=file_id,
                      name=_str(item.get("file_name")),
                      mime_type=_str(item.get("mime_type")) or mime_type,
                      size=_int(item.get("file_size")), kind=kind)


def attachments_of(message: Mapping[str, Any]) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    if FILE_KEYS.isdisjoint(message):  # a text: most messages
        return ()
    photos = message.get("photo")
    if isinstance(photos, list):
        sizes = [p for p in photos if isinstance(p, dict)]
        if sizes:
            # Telegram lists sizes smallest first; the area decides if it did not.
            largest = max(sizes, key=lambda p: (_int(p.get("width")) or 0)
                          * (_int(p.get("height")) or 0))
            if (photo := _file("photo", largest, "image/jpeg")) is not None:
                found.append(photo)  # Telegram re-encodes every photo as JPEG
    for kind in FILE_KINDS:
        if kind == "document" and "animation" in message:
            continue
        item = _dict(message.get(kind))
        if item is not None and (attachment := _file(kind, item)) is not None:
            found.append(attachment)
    return tuple(found)


def _text(message: Mapping[str, Any]) -> str:
    return _str(message.get("text")) or _str(message.get("caption")) or ""


def _content(message: Mapping[str, Any]) -> str:
    """What an unreadable message carried, for `Batch.ignored`."""
    keys = [k for k in message if k not in (
        "message_id", "from", "sender_chat", "chat", "date", "message_thread_id",
        "is_topic_message", "reply_to_message", "edit_date", "author_signature")]
    return keys[0] if keys else "empty"


def _where(kind: str, message: Mapping[str, Any]) -> tuple[str, int, Sender] | str:
    """A message's thread, id and sender; why it is ignored when one is missing."""
    thread = thread_of(message)
    message_id = _int(message.get("message_id"))
    sender = sender_of(message)
    if thread is None or message_id is None or sender is None:
        return f"{kind}: no chat, message_id or sender"
    return thread, message_id, sender


def message_of(org_id: str, integration_id: str, kind: str,
               message: Mapping[str, Any]) -> InboundMessage | str:
    """A `message` / `channel_post` as an InboundMessage, or why it is ignored."""
    where = _where(kind, message)
    if isinstance(where, str):
        return where
    thread, message_id, sender = where
    text, attachments = _text(message), attachments_of(message)
    if not text and not attachments:
        return f"{kind}:{_content(message)}"
    chat = _dict(message.get("chat")) or {}
    reply = _dict(message.get("reply_to_message"))
    reply_id = _int(reply.get("message_id")) if reply else None
    chat_type = _str(chat.get("type"))
    return InboundMessage(
        organization_id=org_id, integration_id=integration_id, channel=CHANNEL,
        thread_id=thread, external_id=str(message_id), sender=sender, text=text,
        sent_at=_time(message.get("date")), received_at=datetime.now(UTC),
        attachments=attachments,
        reply_to_external_id=None if reply_id is None else str(reply_id),
        thread_title=_str(chat.get("title")) if chat_type != "private" else None,
        thread_kind=chat_type)


def edit_of(org_id: str, integration_id: str, kind: str,
            message: Mapping[str, Any]) -> MessageEdit | str:
    where = _where(kind, message)
    if isinstance(where, str):
        return where
    thread, message_id, sender = where
    return MessageEdit(
        organization_id=org_id, integration_id=integration_id, channel=CHANNEL,
        thread_id=thread, external_id=str(message_id), sender=sender, text=_text(message),
        edited_at=_time(message.get("edit_date")), attachments=attachments_of(message))


def callback_of(org_id: str, integration_id: str,
                query: Mapping[str, Any]) -> InboundMessage | str:
    """A button press as a message in the chat of the message that had the
    button; its text is the button's data. An inline-mode callback has no
    chat message and is ignored."""
    query_id = _str(query.get("id"))
    user = _dict(query.get("from"))
    sender = _user(user) if user is not None else None
    message = _dict(query.get("message"))
    thread = thread_of(message) if message is not None else None
    if not query_id or sender is None or message is None or thread is None:
        return "callback_query: no id, sender or chat message"
    chat = _dict(message.get("chat")) or {}
    pressed = _int(message.get("message_id"))
    return InboundMessage(
        organization_id=org_id, integration_id=integration_id, channel=CHANNEL,
        thread_id=thread, external_id=f"{CALLBACK_PREFIX}{query_id}", sender=sender,
        text=_str(query.get("data")) or _str(query.get("game_short_name")) or "",
        received_at=datetime.now(UTC),
        reply_to_external_id=None if pressed is None else str(pressed),
        thread_kind=_str(chat.get("type")))


def state_of(org_id: str, integration_id: str,
             member: Mapping[str, Any]) -> ThreadState | str:
    """The bot's own membership changed: blocked or unblocked by a user,
    removed from or added to a group."""
    chat = _dict(member.get("chat"))
    chat_id = _int(chat.get("id")) if chat else None
    new = _dict(member.get("new_chat_member"))
    status = _str(new.get("status")) if new else None
    if chat is None or chat_id is None or status is None:
        return "my_chat_member: no chat or status"
    private = chat.get("type") == "private"
    if status == "kicked":
        reason = "bot blocked by the user" if private else "bot removed from the chat"
    elif status == "left":
        reason = "bot left the chat"
    else:
        reason = f"bot is {status} in the chat"
    return ThreadState(organization_id=org_id, integration_id=integration_id,
                       channel=CHANNEL, thread_id=str(chat_id),
                       reachable=status not in GONE, reason=reason)


def parse_update(org_id: str, integration_id: str, update: Any) -> Batch:
    """One Update as a Batch; `Invalid` only when it is not an Update at all."""
    update = check(update)
    kinds = [k for k in update if k != "update_id"]
    kind = kinds[0] if kinds else "empty"
    payload = _dict(update.get(kind))
    if payload is None:
        return Batch(ignored=(kind,))
    result: InboundMessage | MessageEdit | ThreadState | str
    if kind in ("message", "channel_post"):
        result = message_of(org_id, integration_id, kind, payload)
    elif kind in ("edited_message", "edited_channel_post"):
        result = edit_of(org_id, integration_id, kind, payload)
    elif kind == "callback_query":
        result = callback_of(org_id, integration_id, payload)
    elif kind == "my_chat_member":
        result = state_of(org_id, integration_id, payload)
    else:
        result = kind
    if isinstance(result, InboundMessage):
        return Batch(messages=(result,))
    if isinstance(result, MessageEdit):
        return Batch(edits=(result,))
    if isinstance(result, ThreadState):
        return Batch(states=(result,))
    return Batch(ignored=(result,))


def merge(batches: Iterable[Batch]) -> Batch:
    messages: list[InboundMessage] = []
    edits: list[MessageEdit] = []
    states: list[ThreadState] = []
    ignored: list[str] = []
    for batch in batches:
        messages.extend(batch.messages)
        edits.extend(batch.edits)
        states.extend(batch.states)
        ignored.extend(batch.ignored)
    return Batch(messages=tuple(messages), edits=tuple(edits), states=tuple(states),
                 ignored=tuple(ignored))


def callback_ids(batch: Batch) -> list[str]:
    """The callback queries a batch carried, to answer once it is stored
    (Telegram shows a spinner on the button until then)."""
    return [m.external_id[len(CALLBACK_PREFIX):] for m in batch.messages
            if m.channel == CHANNEL and m.external_id.startswith(CALLBACK_PREFIX)]
