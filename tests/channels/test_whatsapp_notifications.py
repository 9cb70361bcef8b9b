"""WhatsApp Cloud API notifications as the engine reads them: the body
decoded and routed by phone_number_id, then every message type, reaction
and status parsed into one Batch, each with its own number's organization
and integration; senders keyed on the wa_id, else the business-scoped user
id; bad structure refused as bad input, never a crash."""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from channels.whatsapp_notifications import (
    CHANNEL,
    decode,
    parse_notification,
    phone_number_ids,
)
from core.errors import Invalid, MalformedJSON
from core.messages import Batch, InboundMessage
from tests.fakes import whatsapp_notifications as wn

ORG, INTEGRATION = "0b5a3c1e-org-one", "4d2f9e7a-integration-one"
TARGETS = {wn.PHONE_NUMBER_ID: (ORG, INTEGRATION)}
AT = datetime(2026, 1, 1, tzinfo=UTC)


def parse(notification: Any, targets: dict[str, tuple[str, str]] | None = None) -> Batch:
    """Through the bytes Meta would post, as the route reads them."""
    return parse_notification(decode(wn.encode(notification)),
                              TARGETS if targets is None else targets)


def one(message: dict[str, Any], sender: dict[str, Any] | None = None) -> InboundMessage:
    batch = parse(wn.notification(wn.incoming(sender or wn.user(), message)))
    assert not batch.ignored and not batch.reactions and not batch.statuses
    (parsed,) = batch.messages
    return parsed


# -- messages ------------------------------------------------------------------

def test_text_from_a_user_with_a_phone_number() -> None:
    sheena = wn.user("16505551234", "Sheena Nelson")
    sent = wn.text("Hi, do you ship to Lisbon?", sheena)
    message = one(sent, sheena)
    assert (message.organization_id, message.integration_id, message.channel) == (
        ORG, INTEGRATION, CHANNEL)
    assert message.thread_id == "16505551234" and message.external_id == sent["id"]
    assert message.external_id.startswith("wamid.")
    assert (message.sender.id, message.sender.name, message.sender.phone) == (
        "16505551234", "Sheena Nelson", "+16505551234")
    assert message.sender.aliases == () and message.sender.username is None
    assert message.text == "Hi, do you ship to Lisbon?" and message.data == {"type": "text"}
    assert message.sent_at == AT and message.received_at is not None
    assert message.reply_to_external_id is None and message.attachments == ()


def test_media_messages_carry_their_file() -> None:
    sent = wn.image("Our price list")
    message = one(sent)
    (photo,) = message.attachments
    media = sent["image"]["id"]
    assert message.text == "Our price list" and message.data == {"type": "image"}
    assert (photo.url, photo.provider_id, photo.kind, photo.mime_type, photo.name) == (
        f"whatsapp-media:{media}", media, "image", "image/jpeg", None)

    doc = one(wn.document("invoice 42.pdf"))
    (pdf,) = doc.attachments
    assert doc.text == "" and doc.data == {"type": "document"}
    assert (pdf.kind, pdf.name, pdf.mime_type) == ("document", "invoice 42.pdf",
                                                   "application/pdf")
    assert one(wn.document("q.pdf", caption="The quote")).text == "The quote"

    voice = one(wn.audio(voice=True))
    assert voice.data == {"type": "audio", "voice": True}
    assert voice.attachments[0].mime_type == "audio/ogg; codecs=opus"
    assert one(wn.audio(voice=False)).data == {"type": "audio"}

    clip = one(wn.video("The demo"))
    assert clip.text == "The demo" and clip.attachments[0].kind == "video"

    still, moving = one(wn.sticker(animated=False)), one(wn.sticker(animated=True))
    assert still.data == {"type": "sticker", "animated": False}
    assert moving.data == {"type": "sticker", "animated": True}
    assert still.attachments[0].mime_type == "image/webp"


def test_interactive_replies_and_template_buttons() -> None:
    ours = wn.wamid(wn.DISPLAY_PHONE_NUMBER)
    pressed = one(wn.button_reply("plan-pro", "Pro plan", to=ours))
    assert pressed.text == "Pro plan" and pressed.reply_to_external_id == ours
    assert pressed.data == {"type": "interactive", "reply": {
        "kind": "button_reply", "id": "plan-pro", "title": "Pro plan"}}

    row = one(wn.list_reply("priority_express", "Priority Mail Express", "Next Day to 2 Days"))
    assert row.text == "Priority Mail Express"
    assert row.data == {"type": "interactive", "reply": {
        "kind": "list_reply", "id": "priority_express", "title": "Priority Mail Express",
        "description": "Next Day to 2 Days"}}
    plain = one(wn.list_reply(description=None))
    assert plain.data is not None and "description" not in plain.data["reply"]

    flow = one(wn.flow_reply({"size": "M"}))
    assert flow.text == "Sent" and flow.data is not None
    assert json.loads(flow.data["reply"]["response_json"]) == {"size": "M"}
    assert flow.data["reply"]["kind"] == "nfm_reply"

    template = wn.wamid(wn.DISPLAY_PHONE_NUMBER)
    quick = one(wn.button("Yes, call me", "callback-yes", to=template))
    assert quick.text == "Yes, call me" and quick.reply_to_external_id == template
    assert quick.data == {"type": "button", "payload": "callback-yes"}


def test_location_and_shared_contacts() -> None:
    sent = wn.location(38.7223, -9.1393, "Bidi Lisbon office", "Rua Augusta 1")
    place = one(sent)
    assert place.text == "Location: Bidi Lisbon office, Rua Augusta 1 (38.7223, -9.1393)"
    assert place.data == {"type": "location", "location": sent["location"]}
    bare = one(wn.location(1.5, 2.25, name=None, address=None))
    assert bare.text == "Location: (1.5, 2.25)"

    cards = one(wn.contacts(wn.contact_card("Grace Hopper", "+1 650-555-1234"),
                            wn.contact_card("Alan Turing", phone=None)))
    assert cards.text == "Contact: Grace Hopper +1 650-555-1234\nContact: Alan Turing"
    assert cards.data is not None and cards.data["type"] == "contacts"
    assert [c["name"]["formatted_name"] for c in cards.data["contacts"]] == [
        "Grace Hopper", "Alan Turing"]


def test_a_reaction_is_kept_on_its_message_not_as_one() -> None:
    sheena = wn.user()
    ours = wn.wamid(wn.DISPLAY_PHONE_NUMBER)
    liked, taken_back = wn.reaction(ours, "\U0001f44d", sheena), wn.reaction(ours, None, sheena)
    batch = parse(wn.notification(wn.incoming(sheena, liked, taken_back)))
    assert not batch.messages and not batch.ignored
    first, second = batch.reactions
    assert (first.external_id, first.reaction_id, first.emoji) == (ours, liked["id"], "\U0001f44d")
    assert (first.thread_id, first.sender.id, first.at) == ("16505551234", "16505551234", AT)
    assert (first.organization_id, first.integration_id, first.channel) == (
        ORG, INTEGRATION, "whatsapp")
    assert (second.emoji, second.reaction_id) == ("", taken_back["id"])  # removed


def test_unsupported_and_system_messages_are_kept_never_raise() -> None:
    odd = one(wn.unsupported("poll_update"))
    assert odd.text == "" and odd.data is not None
    assert odd.data["type"] == "unsupported" and odd.data["unsupported"] == {"type": "poll_update"}
    (error,) = odd.data["errors"]
    assert (error["code"], error["title"]) == (131051, "Message type unknown")

    sheena = wn.user()
    moved = wn.number_changed(sheena, new_wa_id="12195555358")
    notification = wn.notification(wn.incoming(sheena, moved))
    assert "contacts" not in notification["entry"][0]["changes"][0]["value"]
    (system,) = parse(notification).messages
    assert system.text == "User Sheena Nelson changed from 16505551234 to 12195555358"
    assert system.sender.id == "16505551234" and system.sender.name is None
    assert system.data == {"type": "system", "system": moved["system"]}

    for kind, payload in (("request_welcome", None), ("order", {"catalog_id": "1",
                                                                  "text": "For Friday"}),
                          ("hologram", {"depth": 3})):
        kept = one(wn.message(kind, payload))
        assert kept.data is not None and kept.data["type"] == kind
    assert one(wn.message("order", {"text": "For Friday"})).text == "For Friday"


def test_context_forwarding_and_ad_referral_go_into_data() -> None:
    earlier = wn.wamid()
    answer = one(wn.text("The pro one", context=wn.replying_to(earlier, "16505551234")))
    assert answer.reply_to_external_id == earlier
    forwarded = one(wn.text("look", context={"forwarded": True}))
    assert forwarded.reply_to_external_id is None
    assert forwarded.data == {"type": "text", "forwarded": True}
    often = one(wn.text("look", context={"frequently_forwarded": True}))
    assert often.data == {"type": "text", "frequently_forwarded": True}
    referral = {"source_url": "https://fb.me/3cr4Wqqkv", "source_id": "120226305854810726",
                "source_type": "ad", "body": "Spring sale", "headline": "Chat with us",
                "media_type": "image", "image_url": "https://scontent.xx.fbcdn.net/v/t45.jpg",
                "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF",
                "welcome_message": {"text": "Hi! How can we help?"}}
    from_ad = one(wn.text("I saw your ad", referral=referral))
    assert from_ad.data == {"type": "text", "referral": referral}


# -- identity ------------------------------------------------------------------

def test_a_user_known_by_bsuid_alone() -> None:
    ada = wn.bsuid_user("US.13491208655302741918", "Ada", "ada.l")
    sent = wn.text("hello", ada)
    assert "from" not in sent and sent["from_user_id"] == "US.13491208655302741918"
    message = one(sent, ada)
    assert message.thread_id == "US.13491208655302741918"
    assert (message.sender.id, message.sender.name, message.sender.username) == (
        "US.13491208655302741918", "Ada", "ada.l")
    assert message.sender.phone is None and message.sender.aliases == ()


def test_a_user_with_both_ids_keeps_the_bsuid_as_alias() -> None:
    both = wn.user("351912345678", "Rita", user_id="PT.7281902764531", username="rita")
    message = one(wn.text("olá", both), both)
    assert message.thread_id == message.sender.id == "351912345678"
    assert message.sender.phone == "+351912345678"
    assert message.sender.aliases == ("PT.7281902764531",)
    assert message.sender.username == "rita"
    # the contact is matched by the BSUID when `from` is absent
    no_from = wn.text("again", both)
    del no_from["from"]
    again = one(no_from, both)
    assert again.sender.id == "351912345678" and again.sender.aliases == ("PT.7281902764531",)
    # a BSUID put in `from` is never taken for a phone number
    odd = wn.text("odd", wn.bsuid_user("BR.1502576394655843"))
    odd["from"] = odd.pop("from_user_id")
    weird = one(odd, wn.bsuid_user("BR.1502576394655843"))
    assert weird.sender.id == "BR.1502576394655843" and weird.sender.phone is None


def test_a_message_with_no_identity_is_ignored_and_named() -> None:
    sent = wn.text("who am I")
    del sent["from"]
    batch = parse(wn.notification(wn.value([sent])))
    assert not batch.messages and batch.ignored == (
        f"message {sent['id']}: no from, from_user_id or contact",)


# -- routing -------------------------------------------------------------------

def test_entries_changes_and_numbers_each_route_their_items() -> None:
    other_number = "209876543210987"
    targets = TARGETS | {other_number: ("org-two", "integration-two")}
    sheena, rita = wn.user(), wn.user("351912345678", "Rita")
    ours, theirs = wn.wamid(wn.DISPLAY_PHONE_NUMBER), wn.wamid("15550001111")
    first = wn.incoming(sheena, wn.text("one", sheena), wn.text("two", sheena))
    second = wn.incoming(rita, wn.text("três", rita), phone_number_id=other_number)
    receipts = wn.outgoing(wn.status(ours, "sent"), wn.status(ours, "delivered"))
    elsewhere = wn.outgoing(wn.status(theirs, "read", rita), phone_number_id=other_number)
    notification = wn.notification(wn.entry(first, receipts),
                                   wn.entry(second, elsewhere, wn.template_status(),
                                            waba_id="200000000000001"))
    assert phone_number_ids(notification) == [wn.PHONE_NUMBER_ID, other_number]
    batch = parse(notification, targets)
    assert [(m.text, m.organization_id, m.integration_id, m.thread_id) for m in batch.messages] == [
        ("one", ORG, INTEGRATION, "16505551234"), ("two", ORG, INTEGRATION, "16505551234"),
        ("três", "org-two", "integration-two", "351912345678")]
    assert [(s.external_id, s.status, s.organization_id) for s in batch.statuses] == [
        (ours, "sent", ORG), (ours, "delivered", ORG), (theirs, "read", "org-two")]
    assert batch.ignored == ("field message_template_status_update",)


def test_unknown_numbers_and_other_fields_are_ignored_and_named() -> None:
    stranger = wn.incoming(wn.user(), wn.text("hi"), phone_number_id="999000111222333")
    notification = wn.notification(stranger, wn.incoming(wn.user(), wn.text("for us")),
                                   wn.change({"phone_number": "15550783881",
                                              "event": "VERIFIED_ACCOUNT"},
                                             field="account_update"))
    batch = parse(notification)
    assert [m.text for m in batch.messages] == ["for us"]
    assert batch.ignored == ("unknown phone_number_id 999000111222333", "field account_update")
    assert parse(wn.notification(wn.template_status())).ignored == (
        "field message_template_status_update",)
    nowhere = wn.notification(wn.change({"messaging_product": "whatsapp"}))
    assert parse(nowhere).ignored == ("entry[0].changes[0]: no phone_number_id",)
    assert parse(wn.notification(wn.incoming(wn.user(), wn.text())), {}).ignored == (
        f"unknown phone_number_id {wn.PHONE_NUMBER_ID}",)


def test_phone_number_ids_reads_nothing_but_metadata() -> None:
    broken = wn.value(phone_number_id="111")
    broken["messages"] = "not a list"
    broken["contacts"] = {"nor": "this"}
    no_id = wn.value([wn.text()], phone_number_id="222")
    del no_id["messages"][0]["id"]
    notification: dict[str, Any] = wn.notification(wn.entry(broken, no_id, broken),
                                                   wn.entry(wn.outgoing(phone_number_id="333")))
    notification["entry"].extend(["junk", {"changes": "junk"}, {"changes": [1, {"value": 2}]},
                                  {"changes": [{"value": {"metadata": {"phone_number_id": 7}}}]}])
    assert phone_number_ids(notification) == ["111", "222", "333"]
    assert phone_number_ids({}) == [] and phone_number_ids({"entry": "x"}) == []
    with pytest.raises(Invalid):
        parse_notification(notification, {"111": (ORG, INTEGRATION)})


# -- statuses ------------------------------------------------------------------

def test_statuses_sent_delivered_read_and_failed() -> None:
    ours = wn.wamid(wn.DISPLAY_PHONE_NUMBER)
    sheena = wn.user()
    batch = parse(wn.notification(wn.outgoing(
        wn.status(ours, "sent", sheena), wn.status(ours, "delivered", sheena),
        wn.status(ours, "read", sheena),
        wn.failed(ours, 131026, "Message undeliverable", "Message Undeliverable.", sheena),
        wn.failed(ours, 131047, "Re-engagement message", details=None, recipient=sheena))))
    sent, delivered, read, undeliverable, window = batch.statuses
    assert [s.status for s in batch.statuses] == ["sent", "delivered", "read", "failed", "failed"]
    assert all(s.external_id == ours and s.thread_id == "16505551234" for s in batch.statuses)
    assert sent.at == datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert (sent.organization_id, sent.integration_id, sent.channel) == (
        ORG, INTEGRATION, "whatsapp")
    assert sent.error_code is None and read.error_title is None
    assert (undeliverable.error_code, undeliverable.error_title) == (
        "131026", "Message undeliverable - Message Undeliverable.")
    assert (window.error_code, window.error_title) == ("131047", "Re-engagement message")
    assert not batch.ignored and not batch.messages


def test_a_status_to_a_bsuid_and_statuses_we_do_not_follow() -> None:
    ada = wn.bsuid_user()
    ours = wn.wamid(wn.DISPLAY_PHONE_NUMBER)
    deleted = wn.status(ours, "deleted", ada)
    batch = parse(wn.notification(wn.outgoing(wn.status(ours, "read", ada), deleted,
                                              wn.status(ours, "warning", ada))))
    (read,) = batch.statuses
    assert read.thread_id == "US.13491208655302741918"
    assert batch.ignored == (f"status deleted for {ours}", f"status warning for {ours}")


# -- bad input -----------------------------------------------------------------

def test_decode_refuses_what_is_not_a_notification() -> None:
    for raw in (b"{not json", b"\xff\xfe{}", b'{"object": "\xc3"}',
                b'{"object": "whatsapp_business_account", "entry": [], "x": "\\ud800"}',
                b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises(MalformedJSON):
            decode(raw)
    for body in ([1, 2], "text", {}, {"object": "page", "entry": []},
                 {"object": "whatsapp_business_account"},
                 {"object": "whatsapp_business_account", "entry": {}}):
        with pytest.raises(Invalid) as caught:
            decode(json.dumps(body).encode())
        assert not isinstance(caught.value, MalformedJSON)
    assert decode(wn.encode(wn.notification())) == {"object": "whatsapp_business_account",
                                                    "entry": []}


def _broken(mend: Any) -> dict[str, Any]:
    notification = wn.notification(wn.incoming(wn.user(), wn.text()),
                                   wn.outgoing(wn.status(wn.wamid())))
    mend(notification["entry"][0]["changes"])
    return notification


@pytest.mark.parametrize(("mend", "field"), [
    (lambda c: c[0]["value"].update(messages={"id": "x"}), "entry[0].changes[0].value.messages"),
    (lambda c: c[1]["value"].update(statuses="read"), "entry[0].changes[1].value.statuses"),
    (lambda c: c[0]["value"].update(contacts={}), "entry[0].changes[0].value.contacts"),
    (lambda c: c[0]["value"]["messages"][0].pop("id"),
     "entry[0].changes[0].value.messages[0].id"),
    (lambda c: c[0]["value"]["messages"][0].update(id=42),
     "entry[0].changes[0].value.messages[0].id"),
    (lambda c: c[1]["value"]["statuses"][0].pop("id"),
     "entry[0].changes[1].value.statuses[0].id"),
    (lambda c: c[0]["value"]["messages"].append("text"),
     "entry[0].changes[0].value.messages[1]"),
    (lambda c: c[0].update(value=[]), "entry[0].changes[0].value"),
])
def test_a_structure_we_cannot_walk_is_invalid(mend: Any, field: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse(_broken(mend))
    assert caught.value.field == field and field in caught.value.message
    assert not isinstance(caught.value, MalformedJSON)


def test_odd_but_valid_input_is_kept() -> None:
    sent = wn.text("nul\x00inside", wn.user(name="A\x00na"))
    sent["future_field"] = {"anything": [1, 2]}
    sent["timestamp"] = "not a time"
    notification = wn.notification(wn.incoming(wn.user(name="A\x00na"), sent))
    notification["entry"][0]["changes"][0]["value"]["future"] = True
    notification["entry"][0]["changes"][0]["value"]["errors"] = [
        {"code": 131000, "title": "Something went wrong"}]
    batch = parse(notification)
    (message,) = batch.messages
    assert (message.text, message.sender.name, message.sent_at) == ("nulinside", "Ana", None)
    assert batch.ignored == ("error 131000: Something went wrong",)
    place = one(wn.location(name="Caf\x00é"))
    assert place.data is not None and place.data["location"]["name"] == "Café"
    long_text = "word " * 5000
    assert one(wn.text(long_text)).text == long_text
    far = wn.text("when?")
    far["timestamp"] = str(10**20)
    assert one(far).sent_at is None
    no_media_id = wn.image()
    del no_media_id["image"]["id"]
    assert one(no_media_id).attachments == ()


def test_sign_is_meta_s_header() -> None:
    body = wn.encode(wn.notification(wn.incoming(wn.user(), wn.text("héllo"))))
    expected = hmac.new(wn.APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert wn.sign(wn.APP_SECRET, body) == f"sha256={expected}"
    assert wn.sign("another secret", body) != wn.sign(wn.APP_SECRET, body)
