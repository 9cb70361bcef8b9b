"""Telegram updates as the connector reads them: the secret token checked
in constant time, then every update shape (private, group, edit, media,
reply, topic, channel post, button press, membership) parsed from the Bot
API's JSON into a Batch, and bad bodies refused as bad input, never a crash."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from channels.telegram import TelegramConnector, callback_ids
from core.errors import Invalid, MalformedJSON, Unauthorized
from storage.integrations import Integration
from tests.channels.bots import SECRET, integration, parse
from tests.fakes import telegram_updates as tu


def test_verify_compares_the_secret_token() -> None:
    bot, verify = integration("1:" + "a" * 35), TelegramConnector().verify
    verify(bot, {"X-Telegram-Bot-Api-Secret-Token": SECRET}, b"{}")
    verify(bot, {"x-telegram-bot-api-secret-token": SECRET}, b"{}")
    for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": SECRET[:-1]},
                    {"X-Telegram-Bot-Api-Secret-Token": ""},
                    {"X-Telegram-Bot-Api-Secret-Token": "ключ"}):
        with pytest.raises(Unauthorized):
            verify(bot, headers, b"{}")
    no_secret = Integration(id="i", org_id="o", type="telegram", name=None, config={},
                            secrets={"bot_token": "1:" + "a" * 35})
    with pytest.raises(Unauthorized):
        verify(no_secret, {"X-Telegram-Bot-Api-Secret-Token": ""}, b"{}")


# -- parsing -------------------------------------------------------------------

def test_private_text() -> None:
    update = tu.private_text("Hello, do you ship to Lisbon?")
    (message,) = parse(update).messages
    sent = update["message"]
    assert message.channel == "telegram" and message.thread_id == str(sent["chat"]["id"])
    assert message.external_id == str(sent["message_id"])
    assert (message.sender.id, message.sender.name, message.sender.username) == (
        str(sent["from"]["id"]), "Ada Lovelace", "ada_l")
    assert message.text == "Hello, do you ship to Lisbon?"
    assert message.sent_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert message.thread_kind == "private" and message.thread_title is None


def test_group_texts_from_three_people() -> None:
    messages = [parse(u).messages[0] for u in tu.group_texts()]
    assert {m.thread_id for m in messages} == {"-4012345678"}
    assert [(m.sender.id, m.sender.name, m.sender.username) for m in messages] == [
        ("201", "Grace Hopper", "grace"), ("202", "Alan Turing", "alan_t"),
        ("203", "Ляля", None)]
    assert all(m.thread_title == "Sales team" and m.thread_kind == "group" for m in messages)
    assert len({m.dedup_key for m in messages}) == 3


def test_an_edit_keeps_the_message_id() -> None:
    original = tu.private_text("Price: 10")
    batch = parse(tu.edited_message(original, "Price: 12"))
    (edit,) = batch.edits
    assert not batch.messages
    assert edit.external_id == str(original["message"]["message_id"])
    assert edit.text == "Price: 12" and edit.edited_at == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)


def test_photo_with_caption_and_document() -> None:
    update = tu.photo("Our price list")
    (message,) = parse(update).messages
    (photo,) = message.attachments
    largest = update["message"]["photo"][-1]
    assert message.text == "Our price list"
    assert (photo.kind, photo.provider_id, photo.url, photo.size, photo.mime_type) == (
        "photo", largest["file_id"], f"telegram-file:{largest['file_id']}",
        largest["file_size"], "image/jpeg")
    (doc_message,) = parse(tu.document("invoice 42.pdf")).messages
    (doc,) = doc_message.attachments
    assert doc_message.text == ""  # a file alone: the attachment is the content
    assert (doc.kind, doc.name, doc.mime_type, doc.size) == (
        "document", "invoice 42.pdf", "application/pdf", 48_213)


def test_reply_topic_and_channel_post() -> None:
    first = tu.private_text("Which plan?")
    (answer,) = parse(tu.reply(first, "The pro one")).messages
    assert answer.reply_to_external_id == str(first["message"]["message_id"])
    (topic,) = parse(tu.topic_message(thread=17)).messages
    assert topic.thread_id == "-1002233445566:17" and topic.thread_kind == "supergroup"
    (post,) = parse(tu.channel_post("New release is out")).messages
    assert (post.sender.id, post.sender.name, post.sender.username) == (
        "-1001987654321", "Bidi news", "bidi_news")
    assert post.thread_kind == "channel" and post.text == "New release is out"


def test_callback_query_is_a_message_to_answer() -> None:
    update = tu.callback_query("plan:pro")
    batch = parse(update)
    (message,) = batch.messages
    query = update["callback_query"]
    assert message.text == "plan:pro" and message.external_id == f"cb:{query['id']}"
    assert message.thread_id == str(query["message"]["chat"]["id"])
    assert message.sender.id == str(query["from"]["id"])
    assert message.reply_to_external_id == str(query["message"]["message_id"])
    assert callback_ids(batch) == [query["id"]]
    assert callback_ids(parse(tu.private_text())) == []


def test_my_chat_member_changes_reachability() -> None:
    (blocked,) = parse(tu.my_chat_member("kicked")).states
    assert not blocked.reachable and blocked.reason == "bot blocked by the user"
    assert blocked.thread_id == str(tu.user()["id"])
    (back,) = parse(tu.my_chat_member("member", old_status="kicked")).states
    assert back.reachable
    (left,) = parse(tu.my_chat_member("left", chat=tu.group_chat())).states
    assert not left.reachable and left.thread_id == "-4012345678"


def test_what_is_not_handled_is_ignored() -> None:
    assert parse({"update_id": 1, "inline_query": {"id": "1", "query": "x"}}).ignored == (
        "inline_query",)
    assert parse({"update_id": 2}).ignored == ("empty",)
    service = tu.update("message", tu.message(tu.group_chat(), tu.user(), None,
                                              new_chat_members=[tu.user(5, "Bob")]))
    assert parse(service).ignored == ("message:new_chat_members",)
    assert parse({"update_id": 3, "message": "not an object"}).ignored == ("message",)
    broken = {"update_id": 4, "message": {"message_id": 1, "chat": "x", "text": "hi"}}
    assert parse(broken).ignored and not parse(broken).messages
    no_query_chat = tu.callback_query()
    del no_query_chat["callback_query"]["message"]
    assert parse(no_query_chat).ignored and not parse(no_query_chat).messages


def test_bad_bodies_are_invalid_never_a_crash() -> None:
    for raw in (b"{not json", b'{"update_id": 1, "message": {"text": "\\ud800"}}',
                b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises(MalformedJSON):
            parse(raw)
    bodies: list[Any] = [[1, 2], "text", {"message": {}}, {"update_id": "5"}, {"update_id": True}]
    bodies.append({"update_id": 2**70, "message": {}})  # no id of Telegram's is that long
    for body in bodies:
        with pytest.raises(Invalid) as caught:
            parse(body)
        assert not isinstance(caught.value, MalformedJSON)


def test_odd_but_valid_input_is_kept() -> None:
    long_text = "word " * 2000
    (message,) = parse(tu.private_text(long_text)).messages
    assert message.text == long_text  # only outbound text is split
    emoji = tu.user(42, "🦄🔥", language_code=None)
    (message,) = parse(tu.private_text("🙂", sender=emoji)).messages
    assert (message.sender.name, message.sender.username, message.text) == ("🦄🔥", None, "🙂")
    update = tu.private_text("nul\x00inside", sender=tu.user(43, "A\x00na"))
    update["message"]["future_field"] = {"anything": [1, 2]}
    update["future_top_level"] = True
    (message,) = parse(update).messages
    assert (message.text, message.sender.name) == ("nulinside", "Ana")  # NULs stripped
    no_from = tu.update("message", tu.message(tu.group_chat(), None, "anonymous"))
    (message,) = parse(no_from).messages
    assert message.sender.id == "-4012345678" and message.sender.name == "Sales team"
    far = tu.private_text("when?")
    far["message"]["date"] = 10**20
    assert parse(far).messages[0].sent_at is None
