"""`ActorHost`: the Ray actor that carries one `Host`, named `bidi-host-{i}`,
restarted by Ray after a crash (`max_restarts=-1`); its virtual actors then
reactivate lazily from Postgres. Calls in flight when it dies fail on the
caller's side (`max_task_retries=0`): the caller decides to retry. A host
whose start fails (Postgres or Redis down while Ray restarted it) tries
again with a backoff until it is up; meanwhile calls fail fast, retryably.

A host has one lifespan, `open_host()`: every resource owner (Redis, the
channels' HTTP clients, Postgres, the group committer, the actor system,
the host itself) is an async context manager in one exit stack, so a start
that fails halfway closes what it opened, and a shutdown closes all of it,
in reverse order."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import ray

from actors.kinds import DEFAULT_KINDS
from actors.runtime.actor import VirtualActor
from actors.runtime.client import NAMESPACE, ActorSystem, host_name
from actors.runtime.host import Host, HostConfig, HostContext
from actors.runtime.startup import NotStarted, Startup
from actors.runtime.wire import Address, Endpoint
from channels import netguard
from channels.api import ApiChannel
from core import collector
from core.errors import StartupError
from core.settings import Settings
from storage import timings
from storage.committer import GroupCommitter
from storage.db import Database
from storage.redis import open_redis

log = logging.getLogger(__name__)

# Hosts ask for a sliver of CPU so that the SPREAD strategy separates them
# across nodes (zero-CPU actors are not spread).
HOST_CPUS = 0.05
METRICS_INTERVAL = 1.0


@asynccontextmanager
async def open_context(index: int, settings: Settings) -> AsyncIterator[HostContext]:
    """Everything a turn may use, opened in order and closed in reverse, also
    when a step fails: Redis (pinged: a host without it is not started), the
    channels' HTTP clients, Postgres, the group committer, the actor system."""
    if settings.database_url is None or settings.redis_url is None:
        raise StartupError("actor hosts need resolved DATABASE_URL and REDIS_URL")
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(open_redis(settings.redis_url))
        await redis.ping()
        policy = netguard.Policy.from_settings(settings)
        api = ApiChannel(policy, await stack.enter_async_context(netguard.client(policy)))
        db = await stack.enter_async_context(
            Database(settings.database_url, settings.app_db_password.get_secret_value(),
                     max_size=settings.pool_size))
        committer = await stack.enter_async_context(GroupCommitter(db))
        system = await stack.enter_async_context(ActorSystem(settings.hosts))
        # `channels.base.sender_for` finds the senders under these names.
        ctx = HostContext(index=index, settings=settings, db=db, redis=redis,
                          committer=committer, system=system, loaders={"sender:api": api})
        stack.push_async_callback(_close_senders, ctx.loaders)
        yield ctx


async def _close_senders(loaders: dict[str, Any]) -> None:
    """The senders made on demand (the Telegram connector's HTTP clients);
    the API channel's client is closed by the stack that opened it."""
    for name, loaded in list(loaders.items()):
        if name.startswith("sender:") and name != "sender:api" and hasattr(loaded, "close"):
            try:
                await loaded.close()
            except Exception as exc:  # shutting down: the others still close
                log.warning("closing %s failed: %s", name, exc)


@asynccontextmanager
async def open_host(index: int, settings: Settings, kinds: Sequence[type[VirtualActor]],
                    config: HostConfig | None = None) -> AsyncIterator[Host]:
    """A host on a complete context, serving its own actors' calls locally and
    maintained (passivation, metrics) until it is left; leaving it flushes
    every actor before the context closes."""
    async with AsyncExitStack() as stack:
        ctx = await stack.enter_async_context(open_context(index, settings))
        host = await stack.enter_async_context(Host(ctx, kinds, config))
        await stack.enter_async_context(timings.publishing(ctx.redis, "host"))
        ctx.system.serve_locally(index, host)
        collector.settle()
        maintenance = asyncio.create_task(_maintain(host), name=f"host {index} maintenance")
        stack.push_async_callback(_cancel, maintenance)
        yield host


async def _maintain(host: Host) -> None:
    interval = min(host.config.scan_interval, METRICS_INTERVAL)
    while True:
        await asyncio.sleep(interval)
        try:
            host.passivate_idle()
            host.push_metrics()
        except Exception:  # maintenance must never die
            log.exception("host maintenance failed")


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class ActorHost:
    """One lifespan: `open_host()` entered by the start, left by `shutdown()`."""

    def __init__(self, index: int, settings: Settings,
                 kinds: Sequence[type[VirtualActor]] = DEFAULT_KINDS,
                 config: HostConfig | None = None) -> None:
        self.index = index
        self.settings = settings
        self.kinds = tuple(kinds)
        self.config = config
        self.host: Host | None = None  # set once started, until shut down
        self.endpoint_: Endpoint | None = None
        self._stack = AsyncExitStack()
        self._startup: Startup | None = None

    async def _ready(self) -> Host:
        if self._startup is None:
            self._startup = Startup(f"actor host {self.index}", self._start)
        await self._startup.ready()
        if self.host is None:
            raise NotStarted(f"actor host {self.index} is shut down")
        return self.host

    async def _start(self) -> None:
        """One attempt: everything opened, or (on failure) nothing left open."""
        async with AsyncExitStack() as stack:
            host = await stack.enter_async_context(
                open_host(self.index, self.settings, self.kinds, self.config))
            endpoint = await stack.enter_async_context(
                Endpoint(host, ray.util.get_node_ip_address()))  # type: ignore[no-untyped-call]
            self._stack = stack.pop_all()
        self.host, self.endpoint_ = host, endpoint

    async def endpoint(self) -> tuple[Address, bytes]:
        """Where and with which token callers connect (`actors.runtime.wire`)."""
        await self._ready()
        assert self.endpoint_ is not None and self.endpoint_.address is not None
        return self.endpoint_.address, self.endpoint_.token

    async def ping(self) -> int:
        await self._ready()
        return self.index

    async def stats(self) -> dict[str, Any]:
        host = await self._ready()
        stats = host.stats()
        stats["commits"] = vars(host.ctx.committer.stats).copy()
        return stats

    async def passivate_idle(self) -> int:
        host = await self._ready()
        return host.passivate_idle()

    async def drain(self) -> None:
        """Flush every actor's state and drop it (before a planned stop)."""
        host = await self._ready()
        await host.passivate_all()

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    async def shutdown(self) -> None:
        """Stop a start under way (it closes what it opened), then leave the
        host: actors flushed, maintenance stopped, every resource closed."""
        if self._startup is not None:
            await self._startup.cancel()
        self.host = self.endpoint_ = None
        await self._stack.aclose()


RemoteHost = ray.remote(ActorHost)


def start_hosts(settings: Settings, *, kinds: Sequence[type[VirtualActor]] = DEFAULT_KINDS,
                config: HostConfig | None = None, timeout: float = 60.0) -> list[Any]:
    """Create (or find) the `settings.hosts` named hosts and wait until they answer."""
    handles: list[Any] = []  # actor handles: their methods' `.remote` is untyped
    for index in range(settings.hosts):
        handles.append(
            RemoteHost.options(
                name=host_name(index), namespace=NAMESPACE, lifetime="detached",
                get_if_exists=True, max_restarts=-1, max_task_retries=0,
                max_concurrency=100_000, num_cpus=HOST_CPUS, scheduling_strategy="SPREAD",
            ).remote(index, settings, tuple(kinds), config))
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
