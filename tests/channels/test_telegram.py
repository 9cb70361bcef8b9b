"""The Telegram connector against a fake Bot API server, through the real
python-telegram-bot client (no engine stack needed)."""
from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from channels.base import ChannelError
from channels.telegram import (
    ALLOWED_UPDATES,
    MAX_TEXT,
    TelegramConnector,
    callback_ids,
    new_secret_token,
    parse_config,
    split_text,
)
from core.errors import Invalid, MalformedJSON, Unauthorized
from core.messages import Batch, OutboundMessage
from serve.stack import free_port
from storage.integrations import Integration
from tests.fakes import telegram_updates as tu
from tests.fakes.telegram import FakeTelegram
from tests.waiting import eventually

SECRET = "s3cr3t_token-for-webhooks_0123456789abcdef"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTelegram]:
    server = FakeTelegram(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
async def connector(fake: FakeTelegram) -> AsyncIterator[TelegramConnector]:
    made = TelegramConnector(api_base_url=fake.url)
    yield made
    await made.close()


@pytest.fixture
def token(fake: FakeTelegram) -> str:
    return fake.add_bot()


def integration(token: str, **config: Any) -> Integration:
    return Integration(id=str(uuid.uuid4()), org_id=str(uuid.uuid4()), type="telegram",
                       name="Sales bot", config={"mode": "polling", **config},
                       secrets={"bot_token": token, "secret_token": SECRET})


def parse(update: Any) -> Batch:
    body = update if isinstance(update, bytes) else json.dumps(update).encode()
    return TelegramConnector().parse(integration("1:" + "a" * 35), body)


def outbound(thread_id: str, text: str, reply_to: str | None = None) -> OutboundMessage:
    return OutboundMessage(organization_id="o", integration_id="i", channel="telegram",
                           thread_id=thread_id, message_id=str(uuid.uuid4()), chat_id="c",
                           text=text, reply_to_external_id=reply_to)


# -- settings ----------------------------------------------------------------

def test_config_is_checked_field_by_field() -> None:
    good = "123456789:" + "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"[:34] + "x"
    config = parse_config({"bot_token": good, "mode": "polling",
                           "api_base_url": "http://127.0.0.1:8081/"})
    assert config.mode == "polling" and config.api_base_url == "http://127.0.0.1:8081"
    assert parse_config({"bot_token": good}).api_base_url == "https://api.telegram.org"
    for data, field in (({"bot_token": "123:short"}, "config.bot_token"),
                        ({"bot_token": "abc:" + "x" * 40}, "config.bot_token"),
                        ({"bot_token": good + "/getMe?"}, "config.bot_token"),
                        ({"bot_token": good + "\n"}, "config.bot_token"),
                        ({}, "config.bot_token"),
                        ({"bot_token": good, "mode": "push"}, "config.mode"),
                        ({"bot_token": good, "api_base_url": "ftp://x"}, "config.api_base_url"),
                        ({"bot_token": good, "api_base_url": "https://h/?a=1"},
                         "config.api_base_url"),
                        ({"bot_token": good, "colour": "red"}, "config")):
        with pytest.raises(Invalid) as caught:
            parse_config(data)
        assert caught.value.field == field, data
        assert "short" not in caught.value.message and good not in caught.value.message


def test_secret_tokens_are_long_and_url_safe() -> None:
    tokens = {new_secret_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) >= 32 and all(c.isalnum() or c in "_-" for c in t) for t in tokens)


# -- getMe, webhooks ---------------------------------------------------------

async def test_get_me_names_the_bot(connector: TelegramConnector, fake: FakeTelegram) -> None:
    token = fake.add_bot(username="acme_sales_bot", first_name="Acme")
    info = await connector.get_me(token, fake.url)
    assert (info.id, info.username, info.name) == (int(token.split(":")[0]),
                                                  "acme_sales_bot", "Acme")


async def test_a_refused_token_is_invalid(connector: TelegramConnector,
                                          fake: FakeTelegram) -> None:
    unknown = "999:" + "b" * 35
    with pytest.raises(Invalid) as caught:
        await connector.get_me(unknown, fake.url)
    assert caught.value.field == "config.bot_token" and "b" * 35 not in caught.value.message
    assert fake.calls_of(unknown, "getMe")
    assert not connector._bots  # a token tried and refused leaves no client behind
    with pytest.raises(Invalid):  # malformed: never sent
        await connector.get_me("999:short/../x", fake.url)


async def test_get_me_on_a_dead_server_is_retryable(connector: TelegramConnector) -> None:
    with pytest.raises(ChannelError) as caught:
        await connector.get_me("1:" + "c" * 35, f"http://127.0.0.1:{free_port()}")
    assert caught.value.retryable


async def test_set_and_delete_webhook(connector: TelegramConnector, fake: FakeTelegram,
                                      token: str) -> None:
    bot = integration(token)
    await connector.set_webhook(bot, "https://bidi.example/v1/channels/telegram/abc")
    (call,) = fake.calls_of(token, "setWebhook")
    assert call.params["secret_token"] == SECRET
    assert call.params["allowed_updates"] == list(ALLOWED_UPDATES)
    info = await connector.bot(token).get_webhook_info()  # the fake's shape, read by PTB
    assert info.url == "https://bidi.example/v1/channels/telegram/abc"
    assert list(info.allowed_updates or ()) == list(ALLOWED_UPDATES)
    with pytest.raises(ChannelError) as caught:  # Telegram wants HTTPS
        await connector.set_webhook(bot, "http://bidi.example/hook")
    assert not caught.value.retryable and caught.value.message.startswith("bad_request:")
    await connector.delete_webhook(bot)
    assert fake.calls_of(token, "deleteWebhook") and fake.bot(token).webhook is None


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


# -- polling -------------------------------------------------------------------

async def test_poll_moves_the_offset(connector: TelegramConnector, fake: FakeTelegram,
                                     token: str) -> None:
    bot = integration(token)
    updates = [tu.private_text(f"n{i}") for i in range(3)]
    fake.enqueue(token, *updates)
    batch, cursor = await connector.poll(bot, None, timeout=0)
    assert [m.text for m in batch.messages] == ["n0", "n1", "n2"]
    assert cursor == str(updates[-1]["update_id"] + 1)
    again, same = await connector.poll(bot, cursor, timeout=0)
    assert again == Batch() and same == cursor
    calls = fake.calls_of(token, "getUpdates")
    assert [c.params.get("offset") for c in calls] == [None, int(cursor)]
    assert calls[0].params["limit"] == 100 and calls[0].params["allowed_updates"] == list(
        ALLOWED_UPDATES)


async def test_poll_takes_100_at_a_time(connector: TelegramConnector, fake: FakeTelegram,
                                        token: str) -> None:
    bot = integration(token)
    fake.enqueue(token, *(tu.private_text(f"m{i}") for i in range(250)))
    texts: list[list[str]] = []
    cursor = None
    for _ in range(3):
        batch, cursor = await connector.poll(bot, cursor, timeout=0)
        texts.append([m.text for m in batch.messages])
    assert [len(t) for t in texts] == [100, 100, 50]
    assert sum(texts, []) == [f"m{i}" for i in range(250)]
    assert (await connector.poll(bot, cursor, timeout=0))[0] == Batch()
    assert not fake.bot(token).updates  # all confirmed by the last offset


async def test_a_long_poll_wakes_for_a_new_update(connector: TelegramConnector,
                                                  fake: FakeTelegram, token: str) -> None:
    bot = integration(token)
    polling = asyncio.create_task(connector.poll(bot, None, timeout=30))
    await eventually(lambda: fake.calls_of(token, "getUpdates"), what="the long poll")
    fake.enqueue(token, tu.private_text("late"))
    batch, _ = await asyncio.wait_for(polling, 10)
    assert [m.text for m in batch.messages] == ["late"]


async def test_poll_errors_are_retryable(connector: TelegramConnector, fake: FakeTelegram,
                                         token: str) -> None:
    bot = integration(token)
    await connector.set_webhook(bot, "https://bidi.example/hook")
    with pytest.raises(ChannelError) as conflict:
        await connector.poll(bot, None, timeout=0)
    assert conflict.value.retryable and conflict.value.message.startswith("conflict:")
    assert "webhook" in conflict.value.message
    await connector.delete_webhook(bot)
    fake.fail(token, "getUpdates", 429, retry_after=7)
    with pytest.raises(ChannelError) as limited:
        await connector.poll(bot, None, timeout=0)
    assert limited.value.retryable and limited.value.retry_after == 7
    fake.drop(token, "getUpdates")
    with pytest.raises(ChannelError) as dropped:
        await connector.poll(bot, None, timeout=0)
    assert dropped.value.retryable
    fake.fail(token, "getUpdates", 502, "Bad Gateway")
    with pytest.raises(ChannelError) as bad_gateway:
        await connector.poll(bot, None, timeout=0)
    assert bad_gateway.value.retryable
    assert (await connector.poll(bot, None, timeout=0))[0] == Batch()


async def test_poll_ignores_an_update_without_id(connector: TelegramConnector,
                                                 fake: FakeTelegram, token: str) -> None:
    good = tu.private_text("kept")
    fake.enqueue(token, good, {"update_id": good["update_id"] + 1, "poll": {"id": "p"}})
    batch, cursor = await connector.poll(integration(token), None, timeout=0)
    assert [m.text for m in batch.messages] == ["kept"] and batch.ignored == ("poll",)
    assert cursor == str(good["update_id"] + 2)


# -- sending -------------------------------------------------------------------

async def test_send_splits_long_text_in_order(connector: TelegramConnector,
                                              fake: FakeTelegram, token: str) -> None:
    words = [f"w{i:04d}" for i in range(1800)]  # 10,799 characters
    receipt = await connector.send(integration(token), outbound("555", " ".join(words), "77"))
    calls = fake.calls_of(token, "sendMessage")
    texts = [c.params["text"] for c in calls]
    assert len(texts) == 3 and all(len(t) <= MAX_TEXT for t in texts)
    assert " ".join(texts).split(" ") == words  # in order, no word cut
    assert [c.params.get("reply_parameters") for c in calls] == [
        {"message_id": 77, "allow_sending_without_reply": True}, None, None]
    assert all(c.params["chat_id"] == 555 for c in calls)
    assert receipt.external_id == str(next(fake.bot(token).message_ids) - 1)  # the last part
    assert receipt.sent_at is not None


async def test_send_to_a_forum_topic(connector: TelegramConnector, fake: FakeTelegram,
                                     token: str) -> None:
    await connector.send(integration(token), outbound("-1002233445566:17", "hello topic"))
    (call,) = fake.calls_of(token, "sendMessage")
    assert (call.params["chat_id"], call.params["message_thread_id"]) == (-1002233445566, 17)
    assert "reply_parameters" not in call.params


async def test_send_errors(connector: TelegramConnector, fake: FakeTelegram,
                           token: str) -> None:
    bot = integration(token)
    fake.fail(token, "sendMessage", 429, retry_after=3)
    with pytest.raises(ChannelError) as limited:
        await connector.send(bot, outbound("555", "hi"))
    assert limited.value.retryable and limited.value.retry_after == 3
    fake.fail(token, "sendMessage", 403)
    with pytest.raises(ChannelError) as blocked:
        await connector.send(bot, outbound("555", "hi"))
    assert not blocked.value.retryable and blocked.value.message.startswith("bot_blocked:")
    fake.fail(token, "sendMessage", 400, "Bad Request: chat not found")
    with pytest.raises(ChannelError) as bad:
        await connector.send(bot, outbound("555", "hi"))
    assert not bad.value.retryable and "chat not found" in bad.value.message.lower()
    fake.drop(token, "sendMessage")
    with pytest.raises(ChannelError) as dropped:
        await connector.send(bot, outbound("555", "hi"))
    assert dropped.value.retryable
    for thread, text in (("555", "  \n "), ("not-a-chat", "hi")):
        with pytest.raises(ChannelError) as refused:
            await connector.send(bot, outbound(thread, text))
        assert not refused.value.retryable
    assert (await connector.send(bot, outbound("555", "hi"))).external_id
    broken = Integration(id="i", org_id="o", type="telegram", name=None, config={},
                         secrets={"bot_token": "12:not-a-token/../getMe"})
    with pytest.raises(ChannelError) as unusable:
        await connector.send(broken, outbound("555", "hi"))
    assert not unusable.value.retryable and "not-a-token" not in unusable.value.message


async def test_a_slow_answer_times_out_retryably(fake: FakeTelegram, token: str) -> None:
    async with TelegramConnector(fake.url, read_timeout=0.3) as impatient:
        fake.delay(token, "sendMessage", 2.0)
        with pytest.raises(ChannelError) as caught:
            await impatient.send(integration(token), outbound("555", "hi"))
        assert caught.value.retryable and "TimedOut" in caught.value.message


async def test_typing_and_callback_answers(connector: TelegramConnector, fake: FakeTelegram,
                                           token: str) -> None:
    bot = integration(token)
    await connector.send_typing(bot, "-1002233445566:17")
    (typing,) = fake.calls_of(token, "sendChatAction")
    assert typing.params == {"chat_id": -1002233445566, "action": "typing",
                             "message_thread_id": 17}
    await connector.answer_callback(bot, "4382bfdwdsb323b2d9")
    (answer,) = fake.calls_of(token, "answerCallbackQuery")
    assert answer.params["callback_query_id"] == "4382bfdwdsb323b2d9"


# -- files ---------------------------------------------------------------------

async def test_download_within_the_cap(connector: TelegramConnector, fake: FakeTelegram,
                                       token: str, tmp_path: Path) -> None:
    content = b"%PDF-1.7 " + bytes(range(256)) * 40
    file_id = fake.add_file(content, "documents/2026/file_12.pdf")
    got = await connector.download(integration(token), file_id, tmp_path, max_bytes=20_000)
    path = Path(got.url)
    assert path.parent == tmp_path and path.suffix == ".pdf" and path.read_bytes() == content
    assert (got.size, got.name, got.provider_id, got.mime_type) == (
        len(content), "file_12.pdf", file_id, "application/pdf")
    again = await connector.download(integration(token), file_id, tmp_path, max_bytes=20_000)
    assert again.url != got.url  # a fresh name each time


async def test_download_over_the_cap(connector: TelegramConnector, fake: FakeTelegram,
                                     token: str, tmp_path: Path) -> None:
    bot = integration(token)
    said = fake.add_file(b"x" * 5000, "photos/file_1.jpg")
    with pytest.raises(ChannelError) as caught:
        await connector.download(bot, said, tmp_path, max_bytes=4096)
    assert not caught.value.retryable and caught.value.message.startswith("file_too_large")
    assert not fake.calls_of(token, "file")  # refused on getFile's size alone
    unsaid = fake.add_file(b"y" * 50_000, "photos/file_2.jpg", reported_size=None)
    with pytest.raises(ChannelError) as streamed:
        await connector.download(bot, unsaid, tmp_path, max_bytes=4096)
    assert not streamed.value.retryable and streamed.value.message.startswith("file_too_large")
    assert list(tmp_path.iterdir()) == []  # the partial file is gone
    with pytest.raises(ChannelError) as unknown:
        await connector.download(bot, "no-such-file", tmp_path, max_bytes=4096)
    assert not unknown.value.retryable


# -- split_text ----------------------------------------------------------------

def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _check_split(text: str, limit: int) -> list[str]:
    parts = split_text(text, limit)
    assert all(p.strip() and _units(p) <= limit for p in parts), parts
    at = 0
    for part in parts:  # the parts are the text, save whitespace where it was cut
        found = text.index(part, at)
        assert not text[at:found].strip(), (text[at:found], part)
        at = found + len(part)
    assert not text[at:].strip()
    return parts


def test_split_text_properties() -> None:
    rng = random.Random(20260101)
    alphabet = ["a", "b", "é", "ж", "😀", "👍🏽", "e\u0301", " ", " ", "\n", "\t"]
    for _ in range(400):
        limit = rng.choice([2, 3, 5, 8, 20, 64])
        words = ["".join(rng.choice(alphabet[:7]) for _ in range(rng.randint(1, 2 * limit)))
                 for _ in range(rng.randint(0, 30))]
        text = "".join(w + rng.choice([" ", "  ", "\n", "\n\n", ""]) for w in words)
        parts = _check_split(text, limit)
        for part in parts:
            assert not part.startswith("\u0301")  # a mark stays with its letter


def test_split_text_keeps_words_when_it_can() -> None:
    text = "lorem ipsum dolor sit amet " * 400
    parts = _check_split(text, MAX_TEXT)
    assert len(parts) == 3 and " ".join(parts).split() == text.split()
    assert split_text("short", MAX_TEXT) == ["short"] and split_text("", 10) == []
    assert split_text("para one is here.\npara two", 20) == ["para one is here.", "para two"]
    assert split_text("para one.\npara two is longer", 20) == ["para one.\npara two", "is longer"]
    assert split_text("x" * 10, 4) == ["xxxx", "xxxx", "xx"]
    assert split_text("😀" * 3, 1) == ["😀", "😀", "😀"]  # wider than the limit: alone
    assert split_text("😀" * 5, 4) == ["😀😀", "😀😀", "😀"]  # UTF-16 units, as Telegram counts
