"""WhatsApp Cloud API webhook notifications exactly as Meta sends them
(developers.facebook.com/docs/whatsapp/cloud-api/webhooks), built small:
a user (a `contacts[]` entry), one function per message type, statuses,
then values, entries and the notification around them; `sign` gives the
`X-Hub-Signature-256` header Meta computes with the app secret.

    ada = user()
    body = encode(notification(incoming(ada, text("Hi", ada))))
    headers = {"X-Hub-Signature-256": sign(APP_SECRET, body)}

A user with a username may come with a business-scoped user id (BSUID) and
no phone number: `user(wa_id=None, user_id="US.1349...", username="ada")`;
their messages then carry `from_user_id` and no `from`."""
from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from collections.abc import Iterable
from typing import Any

JSON = dict[str, Any]
TIMESTAMP = 1_767_225_600  # 2026-01-01T00:00:00Z, as Meta writes it: a string of seconds
WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_PHONE_NUMBER = "15550783881"
APP_SECRET = "8d1f0c6c3f0b4c2a9e7d5b3a1f0e9d8c"
_ids = itertools.count(1)


def wamid(of: str = "16505551234") -> str:
    """A message id in Meta's form: `wamid.` and base64 of the user's id and a
    random-looking part (unique across the test process)."""
    key = of.encode()
    raw = (b"\x18" + bytes([len(key)]) + key + b"\x15\x02\x00\x12\x18\x14"
           + f"3A{next(_ids):018X}".encode() + b"\x00")
    return "wamid." + base64.b64encode(raw).decode()


def media_id() -> str:
    return str(1_000_000_000_000_000 + next(_ids))


def user(wa_id: str | None = "16505551234", name: str | None = "Sheena Nelson",
         user_id: str | None = None, username: str | None = None) -> JSON:
    """A `contacts[]` entry: the profile, the wa_id (the phone's digits) when
    Meta shares it, the BSUID (`user_id`) when the number has them."""
    profile: JSON = {}
    if name is not None:
        profile["name"] = name
    if username is not None:
        profile["username"] = username
    contact: JSON = {"profile": profile}
    if wa_id is not None:
        contact["wa_id"] = wa_id
    if user_id is not None:
        contact["user_id"] = user_id
    return contact


def bsuid_user(user_id: str = "US.13491208655302741918", name: str | None = "Sheena Nelson",
               username: str | None = "sheena.n") -> JSON:
    """A user who chose a username: no phone number reaches the business."""
    return user(wa_id=None, name=name, user_id=user_id, username=username)


def message(kind: str, payload: Any, sender: JSON | None = None,
            context: JSON | None = None, **extra: Any) -> JSON:
    """One `messages[]` item: `from` is the sender's wa_id (absent without
    one), `from_user_id` their BSUID (absent without one)."""
    sender = sender if sender is not None else user()
    found: JSON = {}
    if context is not None:
        found["context"] = context
    if "wa_id" in sender:
        found["from"] = sender["wa_id"]
    if "user_id" in sender:
        found["from_user_id"] = sender["user_id"]
    found |= {"id": wamid(sender.get("wa_id") or sender.get("user_id") or "0"),
              "timestamp": str(TIMESTAMP), "type": kind}
    if payload is not None:
        found[kind] = payload
    return found | extra


def replying_to(message_id: str, sender: str = DISPLAY_PHONE_NUMBER) -> JSON:
    """The `context` of a reply (to the business's message unless `sender`)."""
    return {"from": sender, "id": message_id}


def text(body: str = "Hi, do you ship to Lisbon?", sender: JSON | None = None,
         **extra: Any) -> JSON:
    return message("text", {"body": body}, sender, **extra)


def _media(kind: str, sender: JSON | None, mime_type: str, caption: str | None = None,
           **fields: Any) -> JSON:
    payload: JSON = {}
    if caption is not None:
        payload["caption"] = caption
    payload |= fields
    payload |= {"mime_type": mime_type,
                "sha256": hashlib.sha256(str(next(_ids)).encode()).hexdigest(),
                "id": media_id()}
    return message(kind, payload, sender)


def image(caption: str | None = "Our price list", sender: JSON | None = None) -> JSON:
    return _media("image", sender, "image/jpeg", caption)


def video(caption: str | None = "The demo", sender: JSON | None = None) -> JSON:
    return _media("video", sender, "video/mp4", caption)


def audio(voice: bool = True, sender: JSON | None = None) -> JSON:
    """A voice note (recorded in the app) or an audio file sent as such."""
    return _media("audio", sender, "audio/ogg; codecs=opus", voice=voice)


def document(filename: str = "invoice 42.pdf", caption: str | None = None,
             sender: JSON | None = None) -> JSON:
    return _media("document", sender, "application/pdf", caption, filename=filename)


def sticker(animated: bool = False, sender: JSON | None = None) -> JSON:
    return _media("sticker", sender, "image/webp", animated=animated)


def button_reply(button_id: str = "plan-pro", title: str = "Pro plan",
                 to: str | None = None, sender: JSON | None = None) -> JSON:
    """A tap on a reply button of an interactive message of ours (`to`)."""
    return message("interactive", {"type": "button_reply",
                                   "button_reply": {"id": button_id, "title": title}},
                   sender, context=replying_to(to or wamid(DISPLAY_PHONE_NUMBER)))


def list_reply(row_id: str = "priority_express", title: str = "Priority Mail Express",
               description: str | None = "Next Day to 2 Days", to: str | None = None,
               sender: JSON | None = None) -> JSON:
    row: JSON = {"id": row_id, "title": title}
    if description is not None:
        row["description"] = description
    return message("interactive", {"type": "list_reply", "list_reply": row}, sender,
                   context=replying_to(to or wamid(DISPLAY_PHONE_NUMBER)))


def flow_reply(response: JSON | None = None, to: str | None = None,
               sender: JSON | None = None) -> JSON:
    """A completed WhatsApp Flow: its answers as a JSON string."""
    answers = response if response is not None else {"flow_token": "unused", "size": "M"}
    return message("interactive", {"type": "nfm_reply", "nfm_reply": {
        "name": "flow", "body": "Sent", "response_json": json.dumps(answers)}}, sender,
        context=replying_to(to or wamid(DISPLAY_PHONE_NUMBER)))


def button(text_: str = "Yes, call me", payload: str = "callback-yes",
           to: str | None = None, sender: JSON | None = None) -> JSON:
    """A tap on a quick-reply button of a template message of ours (`to`)."""
    return message("button", {"payload": payload, "text": text_}, sender,
                   context=replying_to(to or wamid(DISPLAY_PHONE_NUMBER)))


def location(latitude: float = 38.7223, longitude: float = -9.1393,
             name: str | None = "Bidi Lisbon office", address: str | None = "Rua Augusta 1",
             sender: JSON | None = None) -> JSON:
    place: JSON = {"latitude": latitude, "longitude": longitude}
    if name is not None:
        place["name"] = name
    if address is not None:
        place["address"] = address
    return message("location", place, sender)


def contact_card(formatted_name: str = "Grace Hopper", phone: str | None = "+1 650-555-1234",
                 wa_id: str | None = "16505551234") -> JSON:
    """One shared contact (a `contacts` message's item)."""
    first, _, last = formatted_name.partition(" ")
    card: JSON = {"name": {"formatted_name": formatted_name, "first_name": first}}
    if last:
        card["name"]["last_name"] = last
    if phone is not None:
        entry: JSON = {"phone": phone, "type": "CELL"}
        if wa_id is not None:
            entry["wa_id"] = wa_id
        card["phones"] = [entry]
    return card


def contacts(*cards: JSON, sender: JSON | None = None) -> JSON:
    return message("contacts", list(cards) or [contact_card()], sender)


def reaction(message_id: str, emoji: str | None = "\U0001f44d",
             sender: JSON | None = None) -> JSON:
    """A reaction to `message_id`; without an emoji it takes one back."""
    payload: JSON = {"message_id": message_id}
    if emoji is not None:
        payload["emoji"] = emoji
    return message("reaction", payload, sender)


def unsupported(kind: str = "poll_update", sender: JSON | None = None) -> JSON:
    return message("unsupported", {"type": kind}, sender, errors=[{
        "code": 131051, "title": "Message type unknown", "message": "Message type unknown",
        "error_data": {"details": "Message type is currently not supported."}}])


def number_changed(sender: JSON | None = None, new_wa_id: str = "12195555358") -> JSON:
    """A system message: the user moved to a new number (no contacts[] come with it)."""
    sender = sender if sender is not None else user()
    name = sender.get("profile", {}).get("name", "")
    return message("system", {
        "body": f"User {name} changed from {sender.get('wa_id')} to {new_wa_id}",
        "wa_id": new_wa_id, "type": "user_changed_number"}, sender)


def status(message_id: str, state: str = "delivered", recipient: JSON | None = None,
           timestamp: int = TIMESTAMP + 5) -> JSON:
    """A `statuses[]` item about one of our messages (sent, delivered, read)."""
    recipient = recipient if recipient is not None else user()
    found: JSON = {"id": message_id, "status": state, "timestamp": str(timestamp)}
    if "wa_id" in recipient:
        found["recipient_id"] = recipient["wa_id"]
    if "user_id" in recipient and (state != "failed" or "wa_id" not in recipient):
        found["recipient_user_id"] = recipient["user_id"]
    if state in ("sent", "delivered", "read"):
        found["conversation"] = {"id": "a75d17ad06104c51166f948319b03c6a",
                                 "origin": {"type": "service"}}
        if state == "sent":
            found["conversation"]["expiration_timestamp"] = str(timestamp + 86_400)
        found["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service",
                            "type": "regular"}
    return found


def failed(message_id: str, code: int = 131026, title: str = "Message undeliverable",
           details: str | None = "Message Undeliverable.", recipient: JSON | None = None,
           timestamp: int = TIMESTAMP + 5) -> JSON:
    error: JSON = {"code": code, "title": title, "message": title}
    if details is not None:
        error["error_data"] = {"details": details}
    error["href"] = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
    return status(message_id, "failed", recipient, timestamp) | {"errors": [error]}


def value(messages: Iterable[JSON] = (), statuses: Iterable[JSON] = (),
          contacts: Iterable[JSON] = (), phone_number_id: str = PHONE_NUMBER_ID,
          display_phone_number: str = DISPLAY_PHONE_NUMBER) -> JSON:
    found: JSON = {"messaging_product": "whatsapp",
                   "metadata": {"display_phone_number": display_phone_number,
                                "phone_number_id": phone_number_id}}
    for key, items in (("contacts", list(contacts)), ("messages", list(messages)),
                       ("statuses", list(statuses))):
        if items:
            found[key] = items
    return found


def incoming(sender: JSON, *messages: JSON, phone_number_id: str = PHONE_NUMBER_ID) -> JSON:
    """A value with one user's messages, as Meta groups them."""
    system_only = all(m.get("type") == "system" for m in messages)
    return value(messages, contacts=() if system_only else [sender],
                 phone_number_id=phone_number_id)


def outgoing(*statuses: JSON, phone_number_id: str = PHONE_NUMBER_ID) -> JSON:
    return value(statuses=statuses, phone_number_id=phone_number_id)


def change(value_: JSON, field: str = "messages") -> JSON:
    return {"value": value_, "field": field}


def template_status(event: str = "APPROVED", name: str = "order_update") -> JSON:
    """A change of another field: a template's review came back."""
    return change({"event": event, "message_template_id": 594425479261596,
                   "message_template_name": name, "message_template_language": "en_US",
                   "reason": "NONE"}, field="message_template_status_update")


def entry(*changes: JSON, waba_id: str = WABA_ID) -> JSON:
    """An entry of changes; a bare value becomes a `messages` change."""
    wrapped = [c if "field" in c else change(c) for c in changes]
    return {"id": waba_id, "changes": wrapped}


def notification(*values_or_entries: JSON) -> JSON:
    """The body Meta posts: values go into one entry, entries stay as given."""
    entries = [v for v in values_or_entries if "changes" in v]
    loose = [v for v in values_or_entries if "changes" not in v]
    if loose:
        entries.insert(0, entry(*loose))
    return {"object": "whatsapp_business_account", "entry": entries}


def encode(notification_: JSON) -> bytes:
    return json.dumps(notification_, ensure_ascii=False).encode()


def sign(app_secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value: HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
