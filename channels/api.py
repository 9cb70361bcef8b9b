"""The generic API channel (an "API inbox"): a customer's system POSTs
messages to `/v1/channels/api/{integration_id}/messages`, signed per Standard
Webhooks with the integration's secret, and receives our replies the same
way at its `callback_url`."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Annotated

import httpx
import msgspec

from channels import netguard, signing
from channels.base import ChannelError
from channels.netguard import Policy
from core.errors import Invalid, MalformedJSON, Unauthorized
from core.messages import Batch, InboundMessage, OutboundMessage, Receipt, Sender
from storage.integrations import Integration

CHANNEL = "api"
MAX_TEXT = 65_536
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Short = Annotated[str, msgspec.Meta(max_length=255)]
RETRYABLE = frozenset({408, 429})  # and every 5xx


class SenderIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: Id
    name: Short | None = None
    email: Short | None = None
    phone: Annotated[str, msgspec.Meta(max_length=50)] | None = None


class MessageIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    external_message_id: Id
    thread_id: Id
    sender: SenderIn
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]


_decoder = msgspec.json.Decoder(MessageIn)


def _clean(value: str | None, field: str) -> None:
    if value is not None and "\x00" in value:
        raise Invalid(f"{field} contains a NUL character", field=field)


def parse_inbound(org_id: str, integration_id: str, body: bytes) -> InboundMessage:
    """The signed body as an `InboundMessage`: `MalformedJSON` when it is
    not JSON, `Invalid` with the reason when it is not a message."""
    try:
        data = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise Invalid(f"invalid message: {exc}") from None
    except msgspec.DecodeError as exc:
        raise MalformedJSON(f"the body is not valid JSON: {exc}") from None
    for field, value in (("external_message_id", data.external_message_id),
                         ("thread_id", data.thread_id), ("text", data.text),
                         ("sender.id", data.sender.id), ("sender.name", data.sender.name),
                         ("sender.email", data.sender.email),
                         ("sender.phone", data.sender.phone)):
        _clean(value, field)
    sender = data.sender
    return InboundMessage(
        organization_id=org_id, integration_id=integration_id, channel=CHANNEL,
        thread_id=data.thread_id, external_id=data.external_message_id,
        sender=Sender(id=sender.id, name=sender.name, email=sender.email, phone=sender.phone),
        text=data.text, received_at=datetime.now(UTC))


class ApiChannel:
    """The API channel's connector (channels.base.WebhookConnector).

    Inbound: a Standard Webhooks signature over the raw body, then one
    message per request.

    Outbound: POST the reply, signed, to the integration's callback URL,
    once per call. What the answer means for the next attempt travels on
    the `ChannelError`: network errors, 408, 429 and 5xx may be retried (the
    chat actor keeps the schedule), 410 and other 4xx and 3xx (redirects are
    not followed) are final, and so is a callback URL the guard refuses."""

    def __init__(self, policy: Policy | None = None,
                 client: httpx.AsyncClient | None = None) -> None:
        self.policy = policy
        self._client = client

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:  # only senders need one; the ingress only verifies
            if self.policy is None:
                raise ChannelError("this connector was built without a network policy")
            self._client = netguard.client(self.policy)
        return self._client

    def verify(self, integration: Integration, headers: Mapping[str, str],
               body: bytes) -> None:
        try:
            signing.verify([integration.secrets["secret"]], headers, body)
        except (signing.SignatureError, KeyError) as exc:
            raise Unauthorized(f"invalid signature: {exc}") from None

    def parse(self, integration: Integration, body: bytes) -> Batch:
        return Batch(messages=(parse_inbound(integration.org_id, integration.id, body),))

    async def send(self, integration: Integration, message: OutboundMessage) -> Receipt:
        url = integration.config.get("callback_url")
        secret = integration.secrets.get("secret")
        if not url or not secret:
            raise ChannelError(f"integration {integration.id} has no callback_url to send to")
        body = msgspec.json.encode({
            "type": "message.outbound", "message_id": message.message_id,
            "chat_id": message.chat_id, "thread_id": message.thread_id, "text": message.text,
            "attachments": message.attachments})
        headers = {"content-type": "application/json",
                   **signing.headers(secret, message.message_id, body)}
        try:
            netguard.target(url)
            response = await self.client.post(url, content=body, headers=headers)
        except netguard.Refused as exc:
            raise ChannelError(f"callback_url refused: {exc.message}") from exc
        except httpx.HTTPError as exc:
            raise ChannelError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        if response.is_success:
            return Receipt(external_id=_external_id(response) or message.message_id,
                           sent_at=datetime.now(UTC))
        code = response.status_code
        error = f"callback answered {code}"
        if code == 410:
            raise ChannelError(f"{error} (gone): the receiver asked us to stop")
        if 300 <= code < 400:
            raise ChannelError(f"{error} (a redirect, which is not followed)")
        retry_after = retry_after_of(response) if code in (429, 503) else None
        raise ChannelError(error, retryable=code in RETRYABLE or code >= 500,
                           retry_after=retry_after)


def retry_after_of(response: httpx.Response, now: datetime | None = None) -> float | None:
    """`Retry-After` in seconds: a number of seconds or an HTTP date."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _external_id(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    value = data.get("external_message_id") if isinstance(data, dict) else None
    return str(value)[:255] if value else None
