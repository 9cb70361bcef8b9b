"""Telegram's outbound limits in Redis (storage.pacing), measured: one
chat's sends at its rate, a group's at its own, the bot's cap across chats
paced by two clients (two hosts), and a chat held for a 429's retry_after
while the bot's other chats go on."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis

from core.settings import Settings
from storage.pacing import TelegramPacer
from storage.redis import open_redis


def bot() -> str:
    return str(uuid.uuid4().int % 10**10)


def rate(times: list[float]) -> float:
    """Sends a second over the span of `times` (sorted)."""
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0])


async def sends(pacer: TelegramPacer, bot_id: str, chat_id: int, count: int) -> list[float]:
    """One chat's sends, one after the other as a chat actor makes them."""
    times = []
    for _ in range(count):
        await pacer.wait(bot_id, chat_id)
        times.append(time.monotonic())
    return times


def assert_near(measured: float, cap: float) -> None:
    assert abs(measured - cap) <= 0.1 * cap, f"{measured:.2f}/s against a cap of {cap}/s"


async def test_one_chat_goes_at_its_rate(redis: aioredis.Redis) -> None:
    pacer = TelegramPacer(redis, chat_per_second=20, group_per_minute=60, bot_per_second=1000)
    times = await sends(pacer, bot(), 4242, 21)
    assert_near(rate(times), 20)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.5 / 20  # no burst, however the sleeps fall


async def test_a_group_goes_at_its_own_rate(redis: aioredis.Redis) -> None:
    # 600 a minute is 10 a second, under the per-chat 50: the group's cap binds.
    pacer = TelegramPacer(redis, chat_per_second=50, group_per_minute=600, bot_per_second=1000)
    bot_id = bot()
    group, private = await asyncio.gather(sends(pacer, bot_id, -1001234567890, 11),
                                          sends(pacer, bot_id, 777, 26))
    assert_near(rate(group), 10)
    assert_near(rate(private), 50)  # a private chat of the same bot keeps its own rate
    assert pacer.interval(-5) == pytest.approx(0.1) and pacer.interval(5) == pytest.approx(0.02)


async def test_the_bot_cap_holds_across_chats_and_hosts(settings: Settings,
                                                        redis: aioredis.Redis) -> None:
    assert settings.redis_url is not None
    other = open_redis(settings.redis_url)  # a second host's client
    try:
        first, second = (TelegramPacer(client, chat_per_second=10, bot_per_second=40)
                         for client in (redis, other))
        bot_id = bot()
        # Eight chats at 10/s would be 80/s: the bot's 40/s must bind.
        per_chat = await asyncio.gather(*(
            sends(first if n % 2 else second, bot_id, 1000 + n, 12) for n in range(8)))
        everything = [t for chat in per_chat for t in chat]
        window = sorted(everything)[:80]  # while all eight chats still had sends to make
        assert_near(rate(window), 40)
        for chat in per_chat:
            assert rate(chat) <= 10 * 1.1
    finally:
        await other.aclose()


async def test_a_held_chat_waits_out_retry_after_while_others_go_on(
        redis: aioredis.Redis) -> None:
    pacer = TelegramPacer(redis, chat_per_second=100, bot_per_second=1000)
    bot_id = bot()
    await pacer.wait(bot_id, 1)
    started = time.monotonic()
    await pacer.hold(bot_id, 1, 0.6)
    await pacer.wait(bot_id, 2)
    assert time.monotonic() - started < 0.3  # another chat of the bot is not held
    await pacer.wait(bot_id, 1)
    assert time.monotonic() - started >= 0.6 - 0.01
    # A shorter hold never shortens a longer one.
    await pacer.hold(bot_id, 1, 0.5)
    await pacer.hold(bot_id, 1, 0.1)
    held = time.monotonic()
    await pacer.wait(bot_id, 1)
    assert time.monotonic() - held >= 0.5 - 0.01


async def test_rates_must_be_positive(redis: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="positive"):
        TelegramPacer(redis, bot_per_second=0)
