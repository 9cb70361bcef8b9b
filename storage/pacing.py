"""Outbound pacing of Telegram bots and WhatsApp numbers, in Redis so that it
holds across the cluster: the chats of one bot live on different hosts, and
Telegram counts per bot (about 30 messages a second), per chat (about one a
second) and per group (20 a minute); Meta counts per business number (80
messages a second by default) and per user (about one every 6 s).

Each key holds the time its next send may go (Redis's own clock, so hosts'
clocks do not matter). A send reserves a slot in one script call: if its chat
is not free yet, it learns how long until it is and asks again then (a
chat's sends are one at a time, so that wait is exact); once the chat is
free, it takes the bot's next slot, which may be in the future, and both
keys move on by their interval from that slot. Slots of one bot are handed
out first come, first served and none is lost to a late wake-up, so a busy
bot sends at its cap and not below it; a send never fails because of our
own pacing, it waits.

Spacing is even (a group's 20 a minute is one send every 3 s), the strict
reading of Telegram's limits: no burst that a flood control could refuse."""
from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

# Redis before 7 replicates scripts verbatim, which refuses writes after TIME
# unless the script asks for its effects to be replicated instead.
_PREAMBLE = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
"""

# A chat's send may come this share of its interval late and still keep its
# rhythm (so two sends to one chat are never less than 90% of the interval
# apart, and on average exactly the interval).
TOLERANCE = 0.1

# KEYS: bot, chat. ARGV: bot interval, chat interval (ms). Times are in ms.
_RESERVE = _PREAMBLE + """
local chat_free = tonumber(redis.call('GET', KEYS[2]) or '0')
if chat_free > now then
  return {0, tostring(chat_free - now)}
end
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local interval = tonumber(ARGV[2])
local bot_next = slot + tonumber(ARGV[1])
-- A send a little late (the wake-up, the round trip) keeps the chat's
-- rhythm: its lateness is not added to every later gap.
local base = slot
if chat_free > 0 and slot - chat_free <= interval * TOLERANCE then
  base = chat_free
end
local chat_next = base + interval
redis.call('SET', KEYS[1], string.format('%.3f', bot_next), 'PX',
           math.ceil(bot_next - now) + 1000)
redis.call('SET', KEYS[2], string.format('%.3f', chat_next), 'PX',
           math.ceil(chat_next - now) + 1000)
return {1, tostring(slot - now)}
""".replace("TOLERANCE", repr(TOLERANCE))

# KEYS: chat. ARGV: ms from now before which the chat sends nothing more.
_HOLD = _PREAMBLE + """
local until_ = math.max(now + tonumber(ARGV[1]), tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], string.format('%.3f', until_), 'PX', math.ceil(until_ - now) + 1000)
return tostring(until_ - now)
"""


def _keys(bot_id: str, chat_id: int | str, channel: str = "telegram") -> tuple[str, str]:
    # One hash tag per sender: a Redis Cluster keeps a bot's keys on one
    # node, as a script touching both needs.
    base = f"pace:{channel}:{{{bot_id}}}"
    return f"{base}:bot", f"{base}:chat:{chat_id}"


async def _take(reserve: Any, keys: tuple[str, str], intervals: list[float]) -> None:
    """Reserve a slot (waiting out a busy chat first), then wait for it."""
    while True:
        taken, wait = await reserve(keys=list(keys), args=intervals)
        delay = max(0.0, float(wait) / 1000.0)
        if delay > 0:
            await asyncio.sleep(delay)
        if int(taken):
            return


class TelegramPacer:
    """Waits for a send's slot under the per-chat, per-group and per-bot
    limits (messages a second, a minute, a second). A group is a chat with a
    negative id, as Telegram numbers them; it is held to both of its limits."""

    def __init__(self, redis: aioredis.Redis, *, chat_per_second: float = 1.0,
                 group_per_minute: float = 20.0, bot_per_second: float = 30.0) -> None:
        if min(chat_per_second, group_per_minute, bot_per_second) <= 0:
            raise ValueError("pacing rates must be positive")
        self.redis = redis
        self.bot_interval = 1000.0 / bot_per_second
        self.chat_interval = 1000.0 / chat_per_second
        self.group_interval = max(self.chat_interval, 60_000.0 / group_per_minute)
        self._reserve = redis.register_script(_RESERVE)
        self._hold = redis.register_script(_HOLD)

    @classmethod
    def from_settings(cls, redis: aioredis.Redis, settings: Any) -> TelegramPacer:
        return cls(redis, chat_per_second=settings.telegram_chat_per_second,
                   group_per_minute=settings.telegram_group_per_minute,
                   bot_per_second=settings.telegram_bot_per_second)

    def interval(self, chat_id: int) -> float:
        """Seconds between two sends to this chat."""
        return (self.group_interval if chat_id < 0 else self.chat_interval) / 1000.0

    async def reserve(self, bot_id: str, chat_id: int) -> tuple[bool, float]:
        """(True, seconds until the slot taken) or (False, seconds until the
        chat is free: nothing was taken; ask again then)."""
        taken, wait = await self._reserve(keys=list(_keys(bot_id, chat_id)),
                                          args=[self.bot_interval, self.interval(chat_id) * 1000])
        return bool(int(taken)), max(0.0, float(wait) / 1000.0)

    async def wait(self, bot_id: str, chat_id: int) -> None:
        """Return when this send may go (one message, or one part of a split one)."""
        await _take(self._reserve, _keys(bot_id, chat_id),
                    [self.bot_interval, self.interval(chat_id) * 1000])

    async def hold(self, bot_id: str, chat_id: int, seconds: float) -> None:
        """Nothing more to this chat for `seconds` (Telegram's retry_after)."""
        await self._hold(keys=[_keys(bot_id, chat_id)[1]], args=[max(0.0, seconds) * 1000.0])


class WhatsAppPacer:
    """Waits for a send's slot under the per-number and per-user limits (the
    same script: the number is the "bot", the user the "chat")."""

    def __init__(self, redis: aioredis.Redis, *, number_per_second: float = 80.0,
                 user_interval: float = 6.0) -> None:
        if number_per_second <= 0 or user_interval < 0:
            raise ValueError("pacing rates must be positive")
        self.number_interval = 1000.0 / number_per_second
        self.user_interval = user_interval * 1000.0
        self._reserve = redis.register_script(_RESERVE)
        self._hold = redis.register_script(_HOLD)

    @classmethod
    def from_settings(cls, redis: aioredis.Redis, settings: Any) -> WhatsAppPacer:
        return cls(redis, number_per_second=settings.whatsapp_number_per_second,
                   user_interval=settings.whatsapp_user_interval)

    async def wait(self, number_id: str, recipient: str) -> None:
        """Return when one more message may go from the number to `recipient`."""
        await _take(self._reserve, _keys(number_id, recipient, "whatsapp"),
                    [self.number_interval, self.user_interval])

    async def hold(self, number_id: str, recipient: str, seconds: float) -> None:
        """Nothing more to `recipient` for `seconds` (Meta throttled the pair)."""
        await self._hold(keys=[_keys(number_id, recipient, "whatsapp")[1]],
                         args=[max(0.0, seconds) * 1000.0])
