"""One Redis pub/sub connection, read by one task only.

redis-py's `PubSub` shares its connection between the task that reads and
the tasks that subscribe: a subscribe on an unsubscribed connection first
runs a health check that READS a reply, racing the reader, and a read that
fails is retried on a fresh connection that resubscribes silently, so
messages published in between are lost without anyone knowing. A
subscriber of the event stream must know: a client that missed events
resumes with `since`. So here one task owns every read, commands are
only written, and a connection is either working or declared lost (its
owner is told once and opens a new one): never quietly replaced.

The reader pings when the line has been quiet for `ping_every` seconds;
a connection that answers nothing for `dead_after` seconds is lost, like
one that errors or closes.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

log = logging.getLogger(__name__)

# (kind, channel, data): kind is "subscribe", "unsubscribe" or "message".
OnMessage = Callable[[str, bytes, Any], None]
OnLost = Callable[[Exception], None]


class Lost(ConnectionError):
    """The pub/sub connection is gone; subscriptions on it are void."""


class Subscriber:
    def __init__(self, conn: Any, on_message: OnMessage, on_lost: OnLost,
                 ping_every: float, dead_after: float) -> None:
        self._conn = conn
        self._on_message = on_message
        self._on_lost = on_lost
        self.ping_every = ping_every
        self.dead_after = dead_after
        self.lost: Exception | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, redis: aioredis.Redis, on_message: OnMessage, on_lost: OnLost,
                   ping_every: float = 5.0, dead_after: float = 15.0) -> Subscriber:
        pool = redis.connection_pool
        kwargs = {**pool.connection_kwargs, "health_check_interval": 0,
                  "socket_timeout": None, "retry": None}
        conn = pool.connection_class(**kwargs)
        await conn.connect()  # type: ignore[no-untyped-call]  # untyped in redis-py
        sub = cls(conn, on_message, on_lost, ping_every, dead_after)
        sub._task = asyncio.create_task(sub._read(), name="pubsub reader")
        return sub

    @property
    def alive(self) -> bool:
        return self.lost is None

    async def subscribe(self, *channels: str) -> None:
        await self._send("SUBSCRIBE", *channels)

    async def unsubscribe(self, *channels: str) -> None:
        await self._send("UNSUBSCRIBE", *channels)

    async def _send(self, *args: Any) -> None:
        # A send on a dropped connection would reconnect it, unsubscribed: never.
        if self.lost is not None or not self._conn.is_connected:
            raise Lost(f"pub/sub connection lost ({self.lost})")
        try:
            await self._conn.send_command(*args, check_health=False)
        except Exception as exc:
            self.fail(exc)
            raise Lost(f"pub/sub connection lost ({exc})") from exc

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = False
        try:
            while self.lost is None:
                # push_request: under RESP3 (redis-py's default) pub/sub
                # frames are pushes, which a plain read skips and drops.
                reply = await self._conn.read_response(timeout=self.ping_every,
                                                       disconnect_on_error=False,
                                                       push_request=True)
                now = loop.time()
                if reply is None:  # quiet for ping_every seconds
                    if now - heard >= self.dead_after:
                        raise Lost(f"no answer from Redis in {self.dead_after:.0f} s")
                    if not pinged:
                        await self._send("PING")
                        pinged = True
                    continue
                heard, pinged = now, False
                self._dispatch(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.fail(exc)

    def _dispatch(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return  # a pong: b"PONG" (RESP3, or unsubscribed) or [b"pong", b""]
        kind = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if kind in ("message", "subscribe", "unsubscribe"):
            self._on_message(kind, reply[1], reply[2])

    def fail(self, exc: Exception) -> None:
        """Declare the connection lost (once): its owner is told, the socket dropped."""
        if self.lost is not None:
            return
        self.lost = exc
        log.warning("pub/sub connection lost: %s", exc)
        with contextlib.suppress(Exception):
            self._conn._close()  # drop the socket now; `close()` awaits the rest
        self._on_lost(exc)

    async def close(self) -> None:
        if self.lost is None:
            self.lost = Lost("closed")
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self._conn.disconnect()
