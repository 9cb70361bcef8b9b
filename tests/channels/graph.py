"""What the WhatsApp connector's tests share: an integration of a fake
Graph API number, outbound messages, a recording pacer."""
from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

import pytest

from channels.base import ChannelError
from channels.whatsapp import (
    WhatsAppConnector,
)
from core.messages import OutboundMessage
from storage.integrations import Integration
from tests.fakes.whatsapp import Number

APP_SECRET = "6f1c2b9e0d4a47b38e5f9a1c2d3e4f50"
VERIFY_TOKEN = "verify-me_0123456789"
WA_ID = "16505551234"
BSUID = "US.13491208655302741918"


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


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
