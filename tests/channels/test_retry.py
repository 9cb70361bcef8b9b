"""What a failed API-channel send means for the next attempt: the schedule
with its jitter, Retry-After, and which answers are final (one attempt per
`send`, against the fake callback server)."""
from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from channels.api import ApiChannel, retry_after_of
from channels.base import JITTER, ChannelError, retry_delay
from channels.netguard import Policy
from channels.signing import new_secret
from core.messages import OutboundMessage
from core.settings import RETRY_SCHEDULE, load_settings
from storage.integrations import Integration
from tests.fakes.callback import CallbackServer


def test_the_default_schedule_is_standard_webhooks() -> None:
    assert RETRY_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert load_settings().outbound_retry_schedule == RETRY_SCHEDULE


def test_each_step_is_jittered_and_the_schedule_ends() -> None:
    rng = random.Random(7)
    for attempts, step in enumerate(RETRY_SCHEDULE):
        delays = [retry_delay(RETRY_SCHEDULE, attempts, rng=rng) for _ in range(200)]
        assert all(d is not None and step * (1 - JITTER) <= d <= step * (1 + JITTER)
                   for d in delays)
        if step:
            assert len(set(delays)) > 100  # spread out, not one value
    assert retry_delay(RETRY_SCHEDULE, len(RETRY_SCHEDULE)) is None


def test_a_larger_retry_after_wins() -> None:
    schedule = (0.0, 5.0, 300.0)
    assert retry_delay(schedule, 1, retry_after=60.0) == 60.0
    small = retry_delay(schedule, 2, retry_after=1.0)
    assert small is not None and small >= 300 * (1 - JITTER)
    assert retry_delay(schedule, 1, retry_after=10 ** 9) == 86_400.0  # capped at a day
    assert retry_delay(schedule, 3, retry_after=1.0) is None  # spent is spent


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def of(value: str) -> float | None:
        return retry_after_of(httpx.Response(503, headers={"retry-after": value}), now)

    assert of("120") == 120.0
    assert of(format_datetime(now + timedelta(seconds=90), usegmt=True)) == 90.0
    assert of(format_datetime(now - timedelta(seconds=90), usegmt=True)) == 0.0
    assert of("soon") is None
    assert retry_after_of(httpx.Response(503), now) is None


@pytest.fixture(scope="module")
async def channel() -> AsyncIterator[ApiChannel]:
    sender = ApiChannel(Policy.of(["127.0.0.1/32"]))
    yield sender
    await sender.client.aclose()


async def send(channel: ApiChannel, url: str) -> OutboundMessage:
    integration = Integration(id=str(uuid.uuid4()), org_id=str(uuid.uuid4()), type="api",
                              name="x", config={"callback_url": url},
                              secrets={"secret": new_secret()})
    message = OutboundMessage(organization_id=integration.org_id,
                              integration_id=integration.id, channel="api", thread_id="t",
                              message_id=str(uuid.uuid4()), chat_id=str(uuid.uuid4()),
                              text="hi")
    await channel.send(integration, message)
    return message


@pytest.mark.parametrize(("path", "retryable", "retry_after", "says"), [
    ("busy2", True, 1.0, "503"),
    ("down", True, None, "503"),
    ("fail400", False, None, "400"),
    ("gone", False, None, "410 (gone)"),
    ("moved", False, None, "302 (a redirect"),
])
async def test_one_attempt_per_send_and_what_it_means(
        channel: ApiChannel, callback: CallbackServer, path: str, retryable: bool,
        retry_after: float | None, says: str) -> None:
    unique = f"{path}-{uuid.uuid4().hex}"
    with pytest.raises(ChannelError) as caught:
        await send(channel, callback.url(unique))
    error = caught.value
    assert (error.retryable, error.retry_after) == (retryable, retry_after)
    assert says in error.message
    assert len(callback.for_path(unique)) == 1  # no retries inside send


async def test_network_errors_are_retryable_and_refusals_final(
        channel: ApiChannel, callback: CallbackServer) -> None:
    from serve.stack import free_port

    with pytest.raises(ChannelError) as closed:
        await send(channel, f"http://127.0.0.1:{free_port()}/nobody")
    assert closed.value.retryable
    with pytest.raises(ChannelError) as refused:
        await send(channel, f"http://127.0.0.2:{callback.port}/ok")
    assert not refused.value.retryable and "loopback" in refused.value.message
    with pytest.raises(ChannelError) as scheme:
        await send(channel, "ftp://example.com/x")
    assert not scheme.value.retryable and "only http and https" in scheme.value.message
