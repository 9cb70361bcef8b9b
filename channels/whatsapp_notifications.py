"""WhatsApp Cloud API webhook notifications as a `Batch` (pure: no I/O).

A notification is `{"object": "whatsapp_business_account", "entry": [{"id":
<WABA id>, "changes": [{"field": "messages", "value": {...}}]}]}`; a value
carries its business number in `metadata.phone_number_id`, the senders in
`contacts[]`, and `messages[]` and/or `statuses[]`. Shapes follow
developers.facebook.com/docs/whatsapp/cloud-api/webhooks.

Identity: a user's `wa_id` (their phone number, digits only) when Meta gives
it, else their business-scoped user id (BSUID, `CC.<alphanumerics>`): users
with a username may come with the BSUID alone. The phone is never the only
key: when both are known the BSUID rides along as an alias.

Strings lose their NUL characters (Postgres text and jsonb cannot hold
them). Unknown fields and message types are kept or skipped, never errors;
only a structure we cannot walk (a list that is not one, a message or status
without an id) is `Invalid`, so the route refuses it before storing anything."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from channels.base import decode_json
from core.errors import Invalid
from core.messages import Attachment, Batch, InboundMessage, Reaction, Sender, StatusUpdate

CHANNEL = "whatsapp"
OBJECT = "whatsapp_business_account"
MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
STATUSES = frozenset({"sent", "delivered", "read", "failed"})
MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z


def _clean(value: Any) -> Any:
    """A JSON value without NUL characters, for text and jsonb columns."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _str(value: Any) -> str | None:
    return value.replace("\x00", "") if isinstance(value, str) else None


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _array(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _time(value: Any) -> datetime | None:
    """Meta's timestamps are unix seconds as a string (an int in a few places)."""
    if isinstance(value, str) and value.isdigit():
        seconds = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        return None
    if not 0 <= seconds <= MAX_SECONDS:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def _wa_id(value: Any) -> str | None:
    # A wa_id is a phone number's digits; anything else (a BSUID, as some
    # payloads put in `from` when no phone is shared) is not a phone.
    text = _str(value)
    return text if text and text.isdigit() else None


def _bsuid(value: Any) -> str | None:
    text = _str(value)
    return text if text and not text.isdigit() else None


def _list(value: Mapping[str, Any], key: str, where: str) -> list[Any]:
    found = value.get(key)
    if found is None:
        return []
    if not isinstance(found, list):
        raise Invalid(f"{where}.{key} must be a list", field=f"{where}.{key}")
    return found


def _item(item: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(item, dict):
        raise Invalid(f"{where} must be an object", field=where)
    return item


def _id(item: Mapping[str, Any], where: str) -> str:
    found = _str(item.get("id"))
    if not found:
        raise Invalid(f"{where}.id must be a non-empty string", field=f"{where}.id")
    return found


def decode(body: bytes) -> dict[str, Any]:
    """One webhook body, checked only as far as routing needs."""
    notification = decode_json(body)
    if not isinstance(notification, dict) or notification.get("object") != OBJECT:
        raise Invalid(f'a WhatsApp notification is a JSON object with "object": "{OBJECT}"',
                      field="object")
    if not isinstance(notification.get("entry"), list):
        raise Invalid("a WhatsApp notification has a list entry", field="entry")
    return notification


def phone_number_ids(notification: Mapping[str, Any]) -> list[str]:
    """The business numbers a notification is for, read before its signature
    is checked (they name the integrations, hence the app secret): nothing
    but `entry[].changes[].value.metadata.phone_number_id` is looked at."""
    found: list[str] = []
    entries = notification.get("entry")
    for entry in entries if isinstance(entries, list) else ():
        changes = _dict(entry).get("changes")
        for change in changes if isinstance(changes, list) else ():
            value = _dict(_dict(change).get("value"))
            number = _str(_dict(value.get("metadata")).get("phone_number_id"))
            if number and number not in found:
                found.append(number)
    return found


class _Value:
    """One change value, with the organization and integration of its number."""

    def __init__(self, value: Mapping[str, Any], where: str, org_id: str,
                 integration_id: str) -> None:
        self.org_id, self.integration_id = org_id, integration_id
        self.contacts = [_item(c, f"{where}.contacts[{i}]")
                         for i, c in enumerate(_list(value, "contacts", where))]

    def sender(self, message: Mapping[str, Any]) -> Sender | None:
        """The author from `from` / `from_user_id` and the contact that matches."""
        sent_from = message.get("from")
        wa_id, bsuid = _wa_id(sent_from), _bsuid(message.get("from_user_id")) or _bsuid(sent_from)
        contact: Mapping[str, Any] = {}
        for candidate in self.contacts:
            if (wa_id and _wa_id(candidate.get("wa_id")) == wa_id) or (
                    bsuid and _bsuid(candidate.get("user_id")) == bsuid):
                contact = candidate
                break
        wa_id = _wa_id(contact.get("wa_id")) or wa_id
        bsuid = bsuid or _bsuid(contact.get("user_id"))
        key = wa_id or bsuid
        if key is None:
            return None
        profile = _dict(contact.get("profile"))
        return Sender(id=key, name=_str(profile.get("name")) or None,
                      username=_str(profile.get("username")) or None,
                      phone=f"+{wa_id}" if wa_id else None,
                      aliases=(bsuid,) if wa_id and bsuid else ())


def _location_text(location: Mapping[str, Any]) -> str:
    place = ", ".join(p for p in (_str(location.get("name")), _str(location.get("address"))) if p)
    lat, lon = location.get("latitude"), location.get("longitude")
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (lat, lon))
    point = f"({lat}, {lon})" if numbers else ""
    return "Location: " + " ".join(p for p in (place, point) if p) if place or point else ""


def _contacts_text(cards: list[Any]) -> str:
    lines = []
    for raw in cards:
        card = _dict(raw)
        name = _str(_dict(card.get("name")).get("formatted_name")) or ""
        phones = _array(card.get("phones"))
        phone = next((p for p in (_str(_dict(x).get("phone")) for x in phones) if p), "")
        lines.append(" ".join(p for p in ("Contact:", name, phone) if p))
    return "\n".join(lines)


def _interactive(body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    kind = _str(body.get("type")) or "unknown"
    reply = _dict(body.get(kind))
    found: dict[str, Any] = {"kind": kind}
    if kind in ("button_reply", "list_reply"):
        for key in ("id", "title", "description"):
            if (part := _str(reply.get(key))) is not None:
                found[key] = part
        return found.get("title", ""), found
    if kind == "nfm_reply":  # a Flow's answer: its fields are in response_json
        for key in ("name", "body", "response_json"):
            if (part := _str(reply.get(key))) is not None:
                found[key] = part
        return found.get("body", ""), found
    return "", found


def _content(kind: str, message: Mapping[str, Any]) -> tuple[str, tuple[Attachment, ...],
                                                              dict[str, Any]]:
    """What a message says: its text, files and structured data, by type."""
    body = _dict(message.get(kind))
    data: dict[str, Any] = {"type": kind}
    if kind == "text":
        return _str(body.get("body")) or "", (), data
    if kind in MEDIA_KINDS:
        media_id = _str(body.get("id"))
        files = (Attachment(url=f"whatsapp-media:{media_id}", provider_id=media_id, kind=kind,
                            name=_str(body.get("filename")) if kind == "document" else None,
                            mime_type=_str(body.get("mime_type"))),) if media_id else ()
        if kind == "audio" and body.get("voice") is True:
            data["voice"] = True
        if kind == "sticker" and isinstance(body.get("animated"), bool):
            data["animated"] = body["animated"]
        return _str(body.get("caption")) or "", files, data
    if kind == "interactive":
        text, data["reply"] = _interactive(body)
        return text, (), data
    if kind == "button":
        data["payload"] = _str(body.get("payload"))
        return _str(body.get("text")) or "", (), data
    if kind == "location":
        data["location"] = _clean(dict(body))
        return _location_text(body), (), data
    if kind == "contacts":
        cards = _array(message.get("contacts"))
        data["contacts"] = _clean(cards)
        return _contacts_text(cards), (), data
    # unsupported, unknown, system, order, request_welcome and types to come:
    # kept (the inbox shows that something came), with what can be read.
    if isinstance(message.get(kind), dict) and kind not in data:
        data[kind] = _clean(dict(body))
    return _str(body.get("body")) or _str(body.get("text")) or "", (), data


def _message(value: _Value, message: Mapping[str, Any], where: str,
             now: datetime) -> InboundMessage | Reaction | str:
    external_id = _id(message, where)
    sender = value.sender(message)
    if sender is None:
        return f"message {external_id}: no from, from_user_id or contact"
    kind = _str(message.get("type")) or "unknown"
    sent_at = _time(message.get("timestamp"))
    if kind == "reaction":
        reaction = _dict(message.get("reaction"))
        target = _str(reaction.get("message_id"))
        if not target:
            return f"reaction {external_id}: no message_id"
        return Reaction(organization_id=value.org_id, integration_id=value.integration_id,
                        channel=CHANNEL, thread_id=sender.id, external_id=target,
                        reaction_id=external_id, sender=sender,
                        emoji=_str(reaction.get("emoji")) or "", at=sent_at)
    text, attachments, data = _content(kind, message)
    context = _dict(message.get("context"))
    for flag in ("forwarded", "frequently_forwarded"):
        if context.get(flag) is True:
            data[flag] = True
    if isinstance(context.get("referred_product"), dict):
        data["referred_product"] = _clean(context["referred_product"])
    if isinstance(message.get("referral"), dict):  # a click-to-WhatsApp ad
        data["referral"] = _clean(message["referral"])
    if errors := _array(message.get("errors")):
        data["errors"] = _clean(errors)
    return InboundMessage(
        organization_id=value.org_id, integration_id=value.integration_id, channel=CHANNEL,
        thread_id=sender.id, external_id=external_id, sender=sender, text=text,
        sent_at=sent_at, received_at=now, attachments=attachments,
        reply_to_external_id=_str(context.get("id")) or None, data=data)


def _status(value: _Value, status: Mapping[str, Any], where: str) -> StatusUpdate | str:
    external_id = _id(status, where)
    state = _str(status.get("status")) or ""
    if state not in STATUSES:
        return f"status {state or 'without a value'} for {external_id}"
    errors = _array(status.get("errors"))
    error = _dict(errors[0]) if errors else {}
    code = error.get("code")
    title = _str(error.get("title")) or _str(error.get("message"))
    details = _str(_dict(error.get("error_data")).get("details"))
    if details:
        title = f"{title} - {details}" if title else details
    return StatusUpdate(
        organization_id=value.org_id, integration_id=value.integration_id, channel=CHANNEL,
        external_id=external_id, status=state, at=_time(status.get("timestamp")),
        thread_id=_str(status.get("recipient_id")) or _str(status.get("recipient_user_id"))
        or None,
        error_code=str(code) if isinstance(code, int | str) and not isinstance(code, bool)
        else None,
        error_title=title or None)


def _value_errors(value: Mapping[str, Any]) -> list[str]:
    """Errors Meta reports about the number itself, outside any message."""
    return [f"error {_dict(e).get('code')}: {_str(_dict(e).get('title')) or ''}".rstrip(": ")
            for e in _array(value.get("errors"))]


def parse_notification(notification: Mapping[str, Any],
                       targets: Mapping[str, tuple[str, str]]) -> Batch:
    """Every message, reaction and status of a notification, each with the
    (organization, integration) of its own value's number in `targets`."""
    messages: list[InboundMessage] = []
    reactions: list[Reaction] = []
    statuses: list[StatusUpdate] = []
    ignored: list[str] = []
    now = datetime.now(UTC)
    for e, entry in enumerate(_list(notification, "entry", "notification")):
        entry = _item(entry, f"entry[{e}]")
        for c, change in enumerate(_list(entry, "changes", f"entry[{e}]")):
            where = f"entry[{e}].changes[{c}]"
            change = _item(change, where)
            field = _str(change.get("field")) or "without a field"
            if field != "messages":
                ignored.append(f"field {field}")
                continue
            raw = _item(change.get("value"), f"{where}.value")
            number = _str(_dict(raw.get("metadata")).get("phone_number_id"))
            if not number:
                ignored.append(f"{where}: no phone_number_id")
                continue
            if number not in targets:
                ignored.append(f"unknown phone_number_id {number}")
                continue
            where = f"{where}.value"
            value = _Value(raw, where, *targets[number])
            for m, message in enumerate(_list(raw, "messages", where)):
                at = f"{where}.messages[{m}]"
                result = _message(value, _item(message, at), at, now)
                if isinstance(result, InboundMessage):
                    messages.append(result)
                elif isinstance(result, Reaction):
                    reactions.append(result)
                else:
                    ignored.append(result)
            for s, status in enumerate(_list(raw, "statuses", where)):
                at = f"{where}.statuses[{s}]"
                update = _status(value, _item(status, at), at)
                if isinstance(update, StatusUpdate):
                    statuses.append(update)
                else:
                    ignored.append(update)
            ignored.extend(_value_errors(raw))
    return Batch(messages=tuple(messages), statuses=tuple(statuses),
                 reactions=tuple(reactions), ignored=tuple(ignored))
