"""WhatsApp sends through the connector against a fake Graph API: payloads,
templates, split text and its retries, Meta's errors mapped, the pacer,
read receipts."""
from __future__ import annotations

import pytest

from channels.base import CREDENTIALS_REFUSED, WINDOW_CLOSED, ChannelError
from channels.telegram import split_text
from channels.whatsapp import (
    MAX_TEXT,
    WhatsAppConnector,
    channel_error,
)
from tests.channels.graph import (
    BSUID,
    WA_ID,
    RecordingPacer,
    integration,
    outbound,
    refused,
)
from tests.fakes.whatsapp import FakeGraph, Number


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
