"""The WhatsApp connector's account side, against a fake Graph API (no
engine needed): settings, signatures, the verification handshake, the
number, the base URL, message templates."""
from __future__ import annotations

import hashlib
from typing import Any

import pytest

from channels.base import CREDENTIALS_REFUSED, ChannelError
from channels.whatsapp import (
    DEFAULT_API_BASE,
    WhatsAppConnector,
    challenge,
    check_signature,
    parse_config,
)
from core.errors import Forbidden, Invalid, Unauthorized
from serve.stack import free_port
from tests.channels.graph import (
    APP_SECRET,
    VERIFY_TOKEN,
    integration,
    outbound,
    sign,
)
from tests.fakes.whatsapp import FakeGraph, Number

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
