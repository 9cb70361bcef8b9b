"""`ActorHost`: the Ray actor that carries one `Host`, named `bidi-host-{i}`,
restarted by Ray after a crash (`max_restarts=-1`); its virtual actors then
reactivate lazily from Postgres. Calls in flight when it dies fail on the
caller's side (`max_task_retries=0`): the caller decides to retry. A host
whose start fails (Postgres or Redis down while Ray restarted it) tries
again with a backoff until it is up; meanwhile calls fail fast, retryably."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from contextlib import AsyncExitStack
from typing import Any

import ray

from actors.runtime.client import NAMESPACE, ActorSystem, host_name
from actors.runtime.host import Host, HostConfig, HostContext
from actors.runtime.protocol import Envelope, Reply
from actors.runtime.startup import Startup
from core.errors import StartupError
from core.settings import Settings
from storage.committer import GroupCommitter
from storage.db import Database
from storage.redis import open_redis

log = logging.getLogger(__name__)

# Hosts ask for a sliver of CPU so that the SPREAD strategy separates them
# across nodes (zero-CPU actors are not spread).
HOST_CPUS = 0.05
METRICS_INTERVAL = 1.0


class ActorHost:
    def __init__(self, index: int, settings: Settings, kinds: dict[str, str] | None = None,
                 config: HostConfig | None = None) -> None:
        self.index = index
        self.settings = settings
        self.ctx = HostContext(index=index, settings=settings)
        self.host = Host(self.ctx, kinds, config)
        self._stack = AsyncExitStack()
        self._startup: Startup | None = None
        self._maintenance: asyncio.Task[None] | None = None

    async def _ready(self) -> None:
        if self._startup is None:
            self._startup = Startup(f"actor host {self.index}", self._start)
        await self._startup.ready()

    async def _start(self) -> None:
        """One attempt: everything opened, or (on failure) nothing left open."""
        settings = self.settings
        if settings.database_url is None or settings.redis_url is None:
            raise StartupError("actor hosts need resolved DATABASE_URL and REDIS_URL")
        stack = AsyncExitStack()
        try:
            db = await stack.enter_async_context(
                Database(settings.database_url, settings.app_db_password.get_secret_value(),
                         max_size=settings.pool_size))
            redis = open_redis(settings.redis_url)
            stack.push_async_callback(redis.aclose)
            await redis.ping()  # a host without Redis is not started
            committer = await stack.enter_async_context(GroupCommitter(db))
            system = ActorSystem(settings.hosts, local=self.host, local_index=self.index)
            stack.push_async_callback(system.close)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self.ctx.db, self.ctx.redis, self.ctx.committer, self.ctx.system = (
            db, redis, committer, system)
        self._maintenance = asyncio.create_task(self._maintain())

    async def _maintain(self) -> None:
        interval = min(self.host.config.scan_interval, METRICS_INTERVAL)
        while True:
            await asyncio.sleep(interval)
            try:
                self.host.passivate_idle()
                self.host.forget_streams()
                self.host.push_metrics()
            except Exception:  # maintenance must never die
                log.exception("host maintenance failed")

    async def deliver(self, stream: str, seq: int, envelopes: list[Envelope]) -> Reply:
        await self._ready()
        return await self.host.deliver(stream, seq, envelopes)

    async def ping(self) -> int:
        await self._ready()
        return self.index

    async def stats(self) -> dict[str, Any]:
        await self._ready()
        stats = self.host.stats()
        committer = self.ctx.committer
        if committer is not None:
            stats["commits"] = vars(committer.stats).copy()
        return stats

    async def passivate_idle(self) -> int:
        await self._ready()
        return self.host.passivate_idle()

    async def drain(self) -> None:
        """Flush every actor's state and drop it (before a planned stop)."""
        await self._ready()
        await self.host.passivate_all()

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    async def shutdown(self) -> None:
        if self._startup is not None:
            await self._startup.cancel()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self.host.passivate_all()
        await self._stack.aclose()


RemoteHost = ray.remote(ActorHost)


def start_hosts(settings: Settings, *, kinds: dict[str, str] | None = None,
                config: HostConfig | None = None, timeout: float = 60.0) -> list[Any]:
    """Create (or find) the `settings.hosts` named hosts and wait until they answer."""
    handles = []
    for index in range(settings.hosts):
        handles.append(
            RemoteHost.options(  # type: ignore[attr-defined]
                name=host_name(index), namespace=NAMESPACE, lifetime="detached",
                get_if_exists=True, max_restarts=-1, max_task_retries=0,
                max_concurrency=100_000, num_cpus=HOST_CPUS, scheduling_strategy="SPREAD",
            ).remote(index, settings, kinds, config))
    try:
        ray.get([h.ping.remote() for h in handles], timeout=timeout)
    except (ray.exceptions.RayError, TimeoutError) as exc:
        raise StartupError(f"actor hosts did not start: {exc}") from exc
    return handles


def stop_hosts(hosts: int, timeout: float = 30.0) -> None:
    """Drain and kill the named hosts (used when we own the cluster's lifetime)."""
    handles = []
    for index in range(hosts):
        with contextlib.suppress(ValueError):
            handles.append(ray.get_actor(host_name(index), namespace=NAMESPACE))
    with contextlib.suppress(ray.exceptions.RayError, TimeoutError):
        ray.get([h.shutdown.remote() for h in handles], timeout=timeout)
    for handle in handles:
        ray.kill(handle, no_restart=True)
