"""The WhatsApp connector against a fake Graph API server (no engine stack
needed), and its pure parts: settings, signatures, the handshake, the
error mapping."""
from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from channels.base import CREDENTIALS_REFUSED, WINDOW_CLOSED, ChannelError
from channels.downloads import stream_to
from channels.telegram import split_text
from channels.whatsapp import (
    DEFAULT_API_BASE,
    MAX_TEXT,
    WhatsAppConnector,
    challenge,
    channel_error,
    check_signature,
    parse_config,
)
from core.errors import Forbidden, Invalid, Unauthorized
from core.messages import OutboundMessage
from serve.stack import free_port
from storage.integrations import Integration
from tests.fakes.whatsapp import FakeGraph, Number

APP_SECRET = "6f1c2b9e0d4a47b38e5f9a1c2d3e4f50"
VERIFY_TOKEN = "verify-me_0123456789"
WA_ID = "16505551234"
BSUID = "US.13491208655302741918"


@pytest.fixture
async def connector(fake_graph: FakeGraph) -> AsyncIterator[WhatsAppConnector]:
    made = WhatsAppConnector(api_base_url=fake_graph.url)
    yield made
    await made.close()


@pytest.fixture
def number(fake_graph: FakeGraph) -> Number:
    return fake_graph.add_number()


def integration(number: Number, *, token: str | None = None, **config: Any) -> Integration:
    return Integration(
        id=str(uuid.uuid4()), org_id=str(uuid.uuid4()), type="whatsapp", name="Sales line",
        config={"phone_number_id": number.phone_number_id, "waba_id": number.waba_id,
                "display_phone_number": number.display_phone_number, **config},
        secrets={"access_token": token or number.access_token, "app_secret": APP_SECRET,
                 "verify_token": VERIFY_TOKEN})


def outbound(thread_id: str = WA_ID, text: str = "hello", *, reply_to: str | None = None,
             template: dict[str, Any] | None = None, sent_parts: int = 0) -> OutboundMessage:
    return OutboundMessage(organization_id="o", integration_id="i", channel="whatsapp",
                           thread_id=thread_id, message_id=str(uuid.uuid4()), chat_id="c",
                           text=text, reply_to_external_id=reply_to, template=template,
                           sent_parts=sent_parts)


class RecordingPacer:
    """Records when the connector asks (a stand-in for storage.pacing's pacer)."""

    def __init__(self) -> None:
        self.waits: list[tuple[str, str, float]] = []
        self.holds: list[tuple[str, str, float]] = []

    async def wait(self, number_id: str, recipient: str) -> None:
        self.waits.append((number_id, recipient, time.monotonic()))

    async def hold(self, number_id: str, recipient: str, seconds: float) -> None:
        self.holds.append((number_id, recipient, seconds))


async def refused(connector: WhatsAppConnector, bot: Integration,
                  message: OutboundMessage | None = None) -> ChannelError:
    with pytest.raises(ChannelError) as caught:
        await connector.send(bot, message or outbound())
    return caught.value


# -- settings, signatures, the handshake ---------------------------------------

GOOD = {"access_token": "EAAGm0PX4ZCpsBAFake" + "Z" * 40, "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN, "phone_number_id": "106540352242922"}


def test_config_is_checked_field_by_field() -> None:
    config = parse_config({**GOOD, "waba_id": "102290129340398",
                           "api_base_url": "http://127.0.0.1:8081/", "api_version": "v21.0"})
    assert (config.api_base_url, config.api_version, config.waba_id) == (
        "http://127.0.0.1:8081", "v21.0", "102290129340398")
    default = parse_config(GOOD)
    assert (default.api_base_url, default.api_version, default.waba_id) == (
        DEFAULT_API_BASE, "v23.0", None)
    assert GOOD["access_token"] not in repr(default) and APP_SECRET not in repr(default)
    secret = "s3cret with space"
    cases: tuple[tuple[dict[str, Any], str], ...] = (
        ({**GOOD, "access_token": secret}, "config.access_token"),
        ({**GOOD, "access_token": ""}, "config.access_token"),
        ({**GOOD, "app_secret": secret}, "config.app_secret"),
        ({**GOOD, "verify_token": secret + "\n"}, "config.verify_token"),
        ({**GOOD, "phone_number_id": "10654/../me"}, "config.phone_number_id"),
        ({**GOOD, "phone_number_id": 106540352242922},
         "config.phone_number_id"),
        ({**GOOD, "waba_id": "12ab"}, "config.waba_id"),
        ({**GOOD, "api_base_url": "ftp://x"}, "config.api_base_url"),
        ({**GOOD, "api_base_url": "https://u:p@h/"}, "config.api_base_url"),
        ({**GOOD, "api_base_url": "https://h/?a=1"}, "config.api_base_url"),
        ({**GOOD, "api_version": "23.0"}, "config.api_version"),
        ({**GOOD, "api_version": "v23.0\n"}, "config.api_version"),
        ({**GOOD, "colour": "red"}, "config"),
        *(({k: v for k, v in GOOD.items() if k != name}, f"config.{name}")
          for name in GOOD))
    for data, field in cases:
        with pytest.raises(Invalid) as caught:
            parse_config(data)
        assert caught.value.field == field, data
        for value in (secret, GOOD["access_token"], APP_SECRET, VERIFY_TOKEN):
            assert value not in caught.value.message, data


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_signatures_are_checked_on_the_raw_body() -> None:
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    check_signature(APP_SECRET, {"X-Hub-Signature-256": sign(body)}, body)
    check_signature(APP_SECRET, {"x-hub-signature-256": sign(body)}, body)
    unsigned: tuple[dict[str, str], ...] = ({}, {"Content-Type": "application/json"})
    for headers in unsigned:
        with pytest.raises(Unauthorized, match="missing X-Hub-Signature-256"):
            check_signature(APP_SECRET, headers, body)
    for signature in (sign(body, "another-secret"), sign(body + b" "),
                      sign(body).removeprefix("sha256="), "sha256=not-hex-at-all", "sha256=",
                      "sha1=" + hashlib.sha1(body).hexdigest(), "sha256=é" * 3, ""):
        with pytest.raises(Unauthorized, match="wrong X-Hub-Signature-256"):
            check_signature(APP_SECRET, {"X-Hub-Signature-256": signature}, body)
    with pytest.raises(Unauthorized, match="wrong"):  # the same signature, another body
        check_signature(APP_SECRET, {"X-Hub-Signature-256": sign(body)}, body + b"\n")


def test_the_verification_handshake() -> None:
    asked = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
             "hub.challenge": "1158201444"}
    assert challenge(VERIFY_TOKEN, asked) == "1158201444"
    for params in ({**asked, "hub.verify_token": "guess"}, {**asked, "hub.mode": "unsubscribe"},
                   {k: v for k, v in asked.items() if k != "hub.verify_token"},
                   {**asked, "hub.verify_token": "é"}):
        with pytest.raises(Forbidden):
            challenge(VERIFY_TOKEN, params)
    with pytest.raises(Forbidden):  # an integration without a token matches nothing
        challenge("", {**asked, "hub.verify_token": ""})


# -- the number ------------------------------------------------------------------

async def test_phone_number_names_the_number(connector: WhatsAppConnector,
                                             fake_graph: FakeGraph) -> None:
    number = fake_graph.add_number(display_phone_number="15551234567", verified_name="Acme")
    config = parse_config({**GOOD, "phone_number_id": number.phone_number_id,
                           "access_token": number.access_token, "api_base_url": fake_graph.url})
    found = await connector.phone_number(config)
    assert (found.id, found.display_phone_number, found.verified_name) == (
        number.phone_number_id, "15551234567", "Acme")
    (call,) = fake_graph.calls_of(number.phone_number_id, "phone")
    assert call.payload == {"fields": "display_phone_number,verified_name"}
    assert call.headers["authorization"] == f"Bearer {number.access_token}"


async def test_phone_number_refusals_name_the_field(connector: WhatsAppConnector,
                                                    fake_graph: FakeGraph,
                                                    number: Number) -> None:
    base = {**GOOD, "phone_number_id": number.phone_number_id,
            "access_token": number.access_token, "api_base_url": fake_graph.url}
    for data, field in (({**base, "access_token": "EAAGnot-a-token"}, "config.access_token"),
                        ({**base, "phone_number_id": "999000111222333"},
                         "config.phone_number_id")):
        with pytest.raises(Invalid) as caught:
            await connector.phone_number(parse_config(data))
        assert caught.value.field == field
        assert number.access_token not in caught.value.message
    fake_graph.fail(number.phone_number_id, "phone", 400, 190, "Error validating access token:"
                    " Session has expired")
    with pytest.raises(Invalid) as expired:
        await connector.phone_number(parse_config(base))
    assert expired.value.field == "config.access_token"
    fake_graph.fail(number.phone_number_id, "phone", 503, 2, "Service temporarily unavailable")
    with pytest.raises(ChannelError) as down:
        await connector.phone_number(parse_config(base))
    assert down.value.retryable


async def test_the_integrations_base_url_wins(fake_graph: FakeGraph, number: Number) -> None:
    async with WhatsAppConnector(f"http://127.0.0.1:{free_port()}") as elsewhere:
        bot = integration(number, api_base_url=fake_graph.url + "/", api_version="v21.0")
        assert (await elsewhere.send(bot, outbound())).external_id.startswith("wamid.")
        with pytest.raises(ChannelError) as dead:  # no base of its own: the connector's
            await elsewhere.send(integration(number), outbound())
        assert dead.value.retryable and dead.value.message.startswith("network:")
        broken = integration(number, phone_number_id="1/../me")
        with pytest.raises(ChannelError) as unusable:
            await elsewhere.send(broken, outbound())
        assert not unusable.value.retryable


# -- sending -----------------------------------------------------------------------

async def test_send_text_payloads(connector: WhatsAppConnector, fake_graph: FakeGraph,
                                  number: Number) -> None:
    bot = integration(number)
    receipt = await connector.send(bot, outbound(WA_ID, "hi there", reply_to="wamid.ABC="))
    await connector.send(bot, outbound(BSUID, "hello, user id"))
    first, second = fake_graph.sent(number.phone_number_id)
    assert first == {"messaging_product": "whatsapp", "recipient_type": "individual",
                     "to": WA_ID, "type": "text",
                     "text": {"body": "hi there", "preview_url": False},
                     "context": {"message_id": "wamid.ABC="}}
    assert second == {"messaging_product": "whatsapp", "recipient_type": "individual",
                      "recipient": BSUID, "type": "text",
                      "text": {"body": "hello, user id", "preview_url": False}}
    assert receipt.external_id.startswith("wamid.") and receipt.sent_at is not None
    (call, _) = fake_graph.calls_of(number.phone_number_id, "messages")
    assert call.headers["authorization"] == f"Bearer {number.access_token}"
    for thread, text in ((WA_ID, " \n "), ("not a wa id", "hi")):
        error = await refused(connector, bot, outbound(thread, text))
        assert not error.retryable


async def test_send_a_template(connector: WhatsAppConnector, fake_graph: FakeGraph,
                               number: Number) -> None:
    fake_graph.add_template(number.waba_id, "order_ready", "en_US")
    fake_graph.add_template(number.waba_id, "hello_world", "en_US", components=[])
    components = [{"type": "body", "parameters": [{"type": "text", "text": "Ada"}]}]
    bot = integration(number)
    await connector.send(bot, outbound(text="x" * 5000, template={
        "name": "order_ready", "language": "en_US", "components": components}))
    await connector.send(bot, outbound(BSUID, template={"name": "hello_world",
                                                        "language": "en_US",
                                                        "components": []}))
    first, second = fake_graph.sent(number.phone_number_id)
    assert first == {"messaging_product": "whatsapp", "recipient_type": "individual",
                     "to": WA_ID, "type": "template",
                     "template": {"name": "order_ready", "language": {"code": "en_US"},
                                  "components": components}}  # one send: never split
    assert second["template"] == {"name": "hello_world", "language": {"code": "en_US"}}
    assert second["recipient"] == BSUID and "to" not in second
    unknown = await refused(connector, bot, outbound(template={"name": "nope",
                                                               "language": "en_US"}))
    assert not unknown.retryable and "(132001)" in unknown.message
    malformed = await refused(connector, bot, outbound(template={"name": "order_ready"}))
    assert not malformed.retryable and len(fake_graph.sent(number.phone_number_id)) == 2


async def test_long_text_is_split_in_order(connector: WhatsAppConnector,
                                           fake_graph: FakeGraph, number: Number) -> None:
    words = [f"w{i:04d}" for i in range(1800)]  # 10,799 characters: three parts
    text = " ".join(words)
    bot = integration(number)
    receipt = await connector.send(bot, outbound(text=text, reply_to="wamid.FIRST"))
    sent = fake_graph.sent(number.phone_number_id)
    bodies = [s["text"]["body"] for s in sent]
    assert bodies == split_text(text, MAX_TEXT) and len(bodies) == 3
    assert " ".join(bodies).split(" ") == words
    assert [s.get("context") for s in sent] == [{"message_id": "wamid.FIRST"}, None, None]
    assert receipt.external_id.startswith("wamid.")


async def test_a_failed_part_is_not_sent_again(connector: WhatsAppConnector,
                                               fake_graph: FakeGraph) -> None:
    number = fake_graph.add_number()
    bot = integration(number)
    text = " ".join(f"w{i:04d}" for i in range(1800))
    parts = split_text(text, MAX_TEXT)
    fake_graph.delay(number.phone_number_id, "messages", 0.0)  # the first part goes
    fake_graph.fail(number.phone_number_id, "messages", 503, 131016, "Service unavailable")
    error = await refused(connector, bot, outbound(text=text, reply_to="wamid.R"))
    assert error.retryable and error.sent_parts == 1 and "part 2 of 3" in error.message
    assert [s["text"]["body"] for s in fake_graph.sent(number.phone_number_id)] == parts[:1]
    receipt = await connector.send(bot, outbound(text=text, reply_to="wamid.R",
                                                 sent_parts=error.sent_parts))
    sent = fake_graph.sent(number.phone_number_id)
    assert [s["text"]["body"] for s in sent] == parts
    assert [s.get("context") for s in sent] == [{"message_id": "wamid.R"}, None, None]
    assert receipt.external_id.startswith("wamid.")


async def test_send_errors_are_mapped(connector: WhatsAppConnector, fake_graph: FakeGraph,
                                      number: Number) -> None:
    bot, pid = integration(number), number.phone_number_id
    fake_graph.fail(pid, "messages", 400, 130429, "Rate limit hit", retry_after=7,
                    details="Cloud API message throughput has been reached.")
    throughput = await refused(connector, bot)
    assert throughput.retryable and throughput.retry_after == 7
    assert throughput.message == ("throttled: sendMessage: (130429) Rate limit hit - Cloud API"
                                  " message throughput has been reached.")
    fake_graph.fail(pid, "messages", 400, 131056, "(Business Account, Consumer Account) pair"
                    " rate limit hit")
    pair = await refused(connector, bot)
    assert pair.retryable and pair.retry_after == 6 and pair.message.startswith("throttled:")
    for code in (80007, 4, 17, 32, 613, 131048):
        fake_graph.fail(pid, "messages", 400, code, "Rate limit issues")
        limited = await refused(connector, bot)
        assert limited.retryable and limited.retry_after == 1, code
    fake_graph.fail(pid, "messages", 400, 131047, "Re-engagement message", details="Message"
                    " failed to send because more than 24 hours have passed since the customer"
                    " last replied to this number.")
    window = await refused(connector, bot)
    assert not window.retryable and window.reason == WINDOW_CLOSED
    assert window.message.startswith("outside_customer_service_window: sendMessage: (131047)")
    fake_graph.fail(pid, "messages", 400, 131026, "Message undeliverable")
    undeliverable = await refused(connector, bot)
    assert not undeliverable.retryable and undeliverable.message.startswith("undeliverable:")
    wrong_token = await refused(connector, integration(number, token="EAAGwrong"))
    assert not wrong_token.retryable and wrong_token.reason == CREDENTIALS_REFUSED
    assert "(190)" in wrong_token.message and "EAAGwrong" not in wrong_token.message
    for status, code in ((403, 10), (403, 200), (400, 131005), (400, 102), (400, 0)):
        fake_graph.fail(pid, "messages", status, code, "Permission denied")
        denied = await refused(connector, bot)
        assert not denied.retryable and denied.reason == CREDENTIALS_REFUSED, code
    for status, code in ((500, 131000), (503, 131016), (500, 1), (500, 2), (400, 131057),
                         (502, 999)):
        fake_graph.fail(pid, "messages", status, code, "Something went wrong")
        transient = await refused(connector, bot)
        assert transient.retryable and transient.message.startswith("unavailable:"), code
    fake_graph.fail(pid, "messages", 400, 100, "Invalid parameter")
    bad = await refused(connector, bot)
    assert not bad.retryable and bad.message == "bad_request: sendMessage: (100) Invalid" \
                                                " parameter"
    fake_graph.drop(pid, "messages")
    dropped = await refused(connector, bot)
    assert dropped.retryable and dropped.message.startswith("network:")
    assert (await connector.send(bot, outbound())).external_id.startswith("wamid.")


async def test_a_slow_answer_times_out_retryably(fake_graph: FakeGraph,
                                                 number: Number) -> None:
    async with WhatsAppConnector(fake_graph.url, read_timeout=0.3) as impatient:
        fake_graph.delay(number.phone_number_id, "messages", 2.0)
        error = await refused(impatient, integration(number))
        assert error.retryable and "ReadTimeout" in error.message


def test_channel_error_without_metas_envelope() -> None:
    for status, body, retryable in ((502, "<html>Bad Gateway</html>", True), (404, None, False),
                                    (408, {}, True), (400, {"error": "nope"}, False),
                                    (401, None, False)):
        error = channel_error(status, body, "sendMessage")
        assert error.retryable is retryable and f"HTTP {status}" in error.message, status
    limited = channel_error(429, None, "sendMessage", headers={"retry-after": "12"})
    assert limited.retryable and limited.retry_after == 12
    assert channel_error(401, None, "x").reason == CREDENTIALS_REFUSED
    assert channel_error(200, {"error": {"code": True}}, "x").message == "bad_request: x:" \
                                                                          " HTTP 200"
    no_200 = channel_error(400, {"error": {"code": 131056, "message": "pair"}}, "x",
                           headers={"Retry-After": "soon"})
    assert no_200.retry_after == 6  # an unreadable header: the default


async def test_answers_that_are_not_metas(connector: WhatsAppConnector,
                                         fake_graph: FakeGraph, number: Number) -> None:
    bot, pid = integration(number), number.phone_number_id
    fake_graph.answer(pid, "messages", 200, {"messaging_product": "whatsapp", "messages": []})
    no_id = await refused(connector, bot)
    assert not no_id.retryable and "without a message id" in no_id.message
    fake_graph.answer(pid, "messages", 502, b"<html><body>Bad Gateway</body></html>")
    gateway = await refused(connector, bot)
    assert gateway.retryable and gateway.message == "unavailable: sendMessage: HTTP 502"
    fake_graph.answer(pid, "messages", 200, b"<html>a captive portal</html>")
    portal = await refused(connector, bot)
    assert not portal.retryable
    assert fake_graph.sent(pid) == []


async def test_the_pacer_is_asked_before_each_part(fake_graph: FakeGraph,
                                                   number: Number) -> None:
    pacer = RecordingPacer()
    async with WhatsAppConnector(fake_graph.url, pacer=pacer) as paced:
        bot = integration(number)
        await paced.send(bot, outbound(BSUID, " ".join(f"w{i:04d}" for i in range(1800))))
        calls = fake_graph.calls_of(number.phone_number_id, "messages")
        assert [(n, r) for n, r, _ in pacer.waits] == [(number.phone_number_id, BSUID)] * 3
        assert all(w[2] <= c.at for w, c in zip(pacer.waits, calls, strict=True))
        assert pacer.holds == []
        await paced.mark_read(bot, "wamid.READ")  # read receipts are not paced
        assert len(pacer.waits) == 3
        fake_graph.fail(number.phone_number_id, "messages", 400, 131056, "pair rate",
                        retry_after=9)
        await refused(paced, bot, outbound(WA_ID))
        assert pacer.holds == [(number.phone_number_id, WA_ID, 9)]
        fake_graph.fail(number.phone_number_id, "messages", 400, 130429, "throughput")
        await refused(paced, bot, outbound(WA_ID))  # the number's limit: no pair held
        assert len(pacer.holds) == 1


async def test_mark_read(connector: WhatsAppConnector, fake_graph: FakeGraph,
                         number: Number) -> None:
    bot = integration(number)
    await connector.mark_read(bot, "wamid.HBgLMTY1MDUwNzY1MjA=")
    (call,) = fake_graph.calls_of(number.phone_number_id, "messages")
    assert call.payload == {"messaging_product": "whatsapp", "status": "read",
                            "message_id": "wamid.HBgLMTY1MDUwNzY1MjA="}
    assert fake_graph.reads(number.phone_number_id) == ["wamid.HBgLMTY1MDUwNzY1MjA="]
    assert fake_graph.sent(number.phone_number_id) == []
    with pytest.raises(ChannelError) as caught:
        await connector.mark_read(bot, "not-a-wamid")
    assert not caught.value.retryable and "(100)" in caught.value.message


# -- templates -----------------------------------------------------------------------

async def test_templates_across_pages(connector: WhatsAppConnector, fake_graph: FakeGraph,
                                      number: Number) -> None:
    made = [fake_graph.add_template(number.waba_id, f"t{i:03d}", "en_US" if i % 2 else "pt_BR",
                                    category="MARKETING" if i % 3 else "UTILITY")
            for i in range(130)]
    found = await connector.templates(integration(number))
    assert found == made
    assert set(found[0]) == {"name", "language", "status", "category", "components", "id"}
    first, second = fake_graph.calls_of(number.waba_id, "templates")
    assert first.payload == {"limit": "100"}
    assert second.payload["limit"] == "100" and second.payload["after"]
    empty = fake_graph.add_number()
    assert await connector.templates(integration(empty)) == []
    with pytest.raises(ChannelError) as caught:
        await connector.templates(integration(number, waba_id=None))
    assert "has no waba_id" in caught.value.message and not caught.value.retryable
    fake_graph.fail(number.waba_id, "templates", 400, 190, "expired")
    with pytest.raises(ChannelError) as refused_token:
        await connector.templates(integration(number))
    assert refused_token.value.reason == CREDENTIALS_REFUSED


# -- media ---------------------------------------------------------------------------

async def test_download_within_the_cap(connector: WhatsAppConnector, fake_graph: FakeGraph,
                                       number: Number, tmp_path: Path) -> None:
    content = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40
    media_id = fake_graph.add_media(content, "image/jpeg")
    got = await connector.download(integration(number), media_id, tmp_path, max_bytes=20_000)
    path = Path(got.url)
    assert path.parent == tmp_path and path.suffix == ".jpg" and path.read_bytes() == content
    assert (got.size, got.mime_type, got.provider_id, got.name) == (
        len(content), "image/jpeg", media_id, None)
    (fetch,) = fake_graph.calls_of(media_id, "download")
    assert fetch.headers["authorization"] == f"Bearer {number.access_token}"
    voice = fake_graph.add_media(b"OggS" + b"\0" * 100, "audio/ogg; codecs=opus")
    note = await connector.download(integration(number), voice, tmp_path, max_bytes=20_000)
    assert Path(note.url).suffix in (".oga", ".ogg", ".opus") and note.url != got.url


async def test_download_refusals(connector: WhatsAppConnector, fake_graph: FakeGraph,
                                 number: Number, tmp_path: Path) -> None:
    bot = integration(number)
    said = fake_graph.add_media(b"x" * 5000)
    with pytest.raises(ChannelError) as too_big:
        await connector.download(bot, said, tmp_path, max_bytes=4096)
    assert not too_big.value.retryable and too_big.value.message.startswith("file_too_large")
    assert not fake_graph.calls_of(said, "download")  # refused on the metadata alone
    understated = fake_graph.add_media(b"y" * 50_000, reported_size=100)
    with pytest.raises(ChannelError) as streamed:
        await connector.download(bot, understated, tmp_path, max_bytes=4096)
    assert not streamed.value.retryable and streamed.value.message.startswith("file_too_large")
    forged = fake_graph.add_media(b"z" * 100, sha256=hashlib.sha256(b"other").hexdigest())
    with pytest.raises(ChannelError) as mismatch:
        await connector.download(bot, forged, tmp_path, max_bytes=4096)
    assert not mismatch.value.retryable and mismatch.value.message.startswith("checksum")
    assert list(tmp_path.iterdir()) == []  # nothing partial or forged is left
    with pytest.raises(ChannelError) as wrong_token:
        await connector.download(integration(number, token="EAAGwrong"), said, tmp_path,
                                 max_bytes=10_000)
    assert wrong_token.value.reason == CREDENTIALS_REFUSED
    fake_graph.fail(said, "download", 401, 190, "expired")
    with pytest.raises(ChannelError) as cdn_refused:
        await connector.download(bot, said, tmp_path, max_bytes=10_000)
    assert not cdn_refused.value.retryable and "401" in cdn_refused.value.message
    fake_graph.fail(said, "download", 503, 2, "busy")
    with pytest.raises(ChannelError) as cdn_busy:
        await connector.download(bot, said, tmp_path, max_bytes=10_000)
    assert cdn_busy.value.retryable
    for unknown in ("1234567890123", "../me"):
        with pytest.raises(ChannelError) as missing:
            await connector.download(bot, unknown, tmp_path, max_bytes=10_000)
        assert not missing.value.retryable
    assert list(tmp_path.iterdir()) == []


async def test_a_download_never_removes_a_file_it_did_not_make(
        fake_graph: FakeGraph, number: Number, tmp_path: Path) -> None:
    media_id = fake_graph.add_media(b"new bytes")
    there = tmp_path / "taken.jpg"
    there.write_bytes(b"someone else's")
    async with httpx.AsyncClient() as client:
        with pytest.raises(FileExistsError):
            await stream_to(client, f"{fake_graph.url}/media/{media_id}", there, 1000,
                            headers={"Authorization": f"Bearer {number.access_token}"})
    assert there.read_bytes() == b"someone else's"


# -- the client --------------------------------------------------------------------

async def test_one_client_made_lazily_and_closed(fake_graph: FakeGraph,
                                                 number: Number) -> None:
    connector = WhatsAppConnector(fake_graph.url)
    assert connector._http is None
    async with connector:
        await connector.send(integration(number), outbound())
        client = connector._http
        await connector.mark_read(integration(number), "wamid.X")
        assert client is not None and connector._http is client
    assert client.is_closed and connector._http is None
    await connector.close()  # twice is fine
