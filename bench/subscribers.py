"""What counts the delivered messages in bench/realtime.py: a WebSocket
subscriber of the engine's org topic and a Redis subscriber of the
baseline's channel, each timing the frames that carry their send time."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.baseline import CHANNEL as BASELINE_CHANNEL


class Subscriber:
    """One WebSocket on the org topic, counting message.received frames."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.count = 0
        self.last_at = 0.0
        self.latencies: list[float] = []
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import websockets

        self.ws = await websockets.connect(self.url, max_queue=None, open_timeout=60,
                                           ping_interval=None, compression=None)
        await self.ws.send(json.dumps({"type": "subscribe", "topics": ["org"], "ref": 1}))
        while json.loads(await self.ws.recv()).get("type") != "subscribed":
            pass
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        import websockets

        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("event_type") != "message.received":
                    continue
                now = time.perf_counter()
                self.on_frame(frame)
                text = frame["data"]["content"]
                if text.startswith("t="):
                    self.latencies.append((now - float(text[2:])) * 1000)
                self.last_at = now
                self.count += 1
        except websockets.ConnectionClosed:
            pass

    def on_frame(self, frame: dict[str, Any]) -> None:
        """Each message.received frame as it comes (for subclasses to look at)."""

    async def close(self) -> None:
        await self.ws.close()


class RedisSubscriber:
    """The baseline's subscriber: one Redis pub/sub connection on its channel,
    counting frames and timing those whose text carries a send time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.count = 0
        self.last_at = 0.0
        self.latencies: list[float] = []
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from redis.asyncio import Redis

        self.client = Redis.from_url(self.url)
        self.pubsub = self.client.pubsub()
        await self.pubsub.subscribe(BASELINE_CHANNEL)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.pubsub.listen():
            if message["type"] != "message":
                continue
            now = time.perf_counter()
            text = json.loads(message["data"])["text"]
            if text.startswith("t="):
                self.latencies.append((now - float(text[2:])) * 1000)
            self.last_at = now
            self.count += 1

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.pubsub.aclose()
        await self.client.aclose()
