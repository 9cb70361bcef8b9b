"""The Telegram connector against a fake Bot API server, through the real
python-telegram-bot client (no engine stack needed)."""
from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from channels.base import ChannelError
from channels.telegram import (
    ALLOWED_UPDATES,
    MAX_TEXT,
    TelegramConnector,
    new_secret_token,
    parse_config,
    split_text,
)
from core.errors import Invalid
from core.messages import Batch, OutboundMessage
from serve.stack import free_port
from storage.integrations import Integration
from tests.channels.bots import SECRET, integration
from tests.fakes import telegram_updates as tu
from tests.fakes.telegram import FakeTelegram
from tests.waiting import eventually


@pytest.fixture
async def connector(fake: FakeTelegram) -> AsyncIterator[TelegramConnector]:
    made = TelegramConnector(api_base_url=fake.url)
    yield made
    await made.close()


@pytest.fixture
def token(fake: FakeTelegram) -> str:
    return fake.add_bot()


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
