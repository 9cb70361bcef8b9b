"""The FastAPI app: one lifespan composing this process's resources."""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp

from actors.runtime.client import ActorSystem
from core import collector
from core.settings import Settings
from serve import errors, health, openapi
from serve.fastpath import FastPath
from serve.limits import BodyLimit, json_depth
from serve.routers.channels_api import MAX_BODY
from storage import timings
from storage.db import Database
from storage.ratelimit import TokenBucket
from storage.redis import open_redis
from storage.revocations import Revocations

VERSION = "0.1.0"


@dataclass
class Runtime:
    """What a request handler may use: settings, Postgres pools, Redis, actors."""

    settings: Settings
    db: Database
    redis: aioredis.Redis
    actors: ActorSystem
    bucket: TokenBucket  # per caller and route
    revocations: Revocations | None = None  # revoked sessions, kept from pub/sub


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    if settings.database_url is None or settings.redis_url is None:
        raise ValueError("open_runtime needs resolved DATABASE_URL and REDIS_URL")
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(
            Database(settings.database_url, settings.app_db_password.get_secret_value(),
                     max_size=settings.pool_size)
        )
        client = open_redis(settings.redis_url)
        stack.push_async_callback(client.aclose)
        actors = ActorSystem(settings.hosts)
        stack.push_async_callback(actors.close)
        bucket = TokenBucket(client, settings.rate_burst, settings.rate_per_minute / 60)
        revocations = await stack.enter_async_context(Revocations(client))
        await stack.enter_async_context(timings.publishing(client, "api"))
        yield Runtime(settings=settings, db=db, redis=client, actors=actors, bucket=bucket,
                      revocations=revocations)


class App(FastAPI):
    """FastAPI with the body cap (outermost: no body is read past its cap, on
    any path) and the raw-ASGI fast path (serve.fastpath) in front of the
    middleware FastAPI wraps every request in; what the fast path passes on
    meets that middleware as before.

    Two costs per request FastAPI has by default go (bench/overheads.py):
    its native OpenTelemetry looks for global providers on every request
    (2.4 us; on with `BIDI_OTEL`), and its documentation routes come after
    the API's routers (`add_docs`), not first: Serve names each request's
    route by trying the routes in order, 2.2 us fewer for a webhook."""

    def __init__(self, *, body_limit: dict[str, int], otel: bool, **kwargs: Any) -> None:
        self.body_limit = body_limit
        self._docs_added = False
        off: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
        super().__init__(telemetry=None if otel else off, **kwargs)

    def setup(self) -> None:
        """FastAPI's documentation routes, once `add_docs` asks for them."""
        if self._docs_added:
            super().setup()

    def add_docs(self) -> None:
        self._docs_added = True
        self.setup()

    def build_middleware_stack(self) -> ASGIApp:
        return cast(ASGIApp, BodyLimit(FastPath(super().build_middleware_stack()),
                                       **self.body_limit))


def build_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings) as runtime:
            app.state.runtime = runtime
            # Everything loaded so far lives as long as the process: keep it out
            # of the collector's full passes (bench/api.py: p99 140.6 -> 134.5 ms).
            collector.settle()
            try:
                yield
            finally:
                hub = getattr(app.state, "hub", None)
                if hub is not None:
                    await hub.close()
                committer = getattr(app.state, "status_committer", None)
                if committer is not None:  # serve.inbound.apply_statuses
                    await committer.__aexit__(None, None, None)
                for name in ("telegram", "whatsapp"):  # connectors made on first use
                    connector = getattr(app.state, name, None)
                    if connector is not None:
                        await connector.close()

    app = App(
        body_limit={"default": settings.max_body_bytes, "import_bytes": settings.max_import_bytes,
                    "inbound_bytes": MAX_BODY},
        otel=settings.otel,
        title="Bidi",
        version=VERSION,
        description="Actor-based realtime messaging engine for AI-first sales CRMs.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        dependencies=[Depends(json_depth)],
    )
    errors.install(app)
    app.include_router(health.router)
    for module in routers():
        app.include_router(module.router)
    app.add_docs()
    openapi.install(app)
    return app


# Routed first: Serve names each request's route for its metrics by trying
# the app's routes in order (ray.serve's get_asgi_route_name), 28 us per
# channel webhook with the routers in name order, about a tenth of the
# replica's time per message. Their paths are their own (no other router's
# path matches them), so the order changes nothing else.
HOT = ("channels_api", "channels_telegram", "channels_whatsapp", "contacts")


def routers() -> list[ModuleType]:
    """Every module of `serve.routers` with a `router`: the HOT ones first,
    then the rest in name order."""
    import serve.routers as package

    found = []
    names = sorted((m.name for m in pkgutil.iter_modules(package.__path__)),
                   key=lambda name: (HOT.index(name) if name in HOT else len(HOT), name))
    for name in names:
        module = importlib.import_module(f"{package.__name__}.{name}")
        if hasattr(module, "router"):
            found.append(module)
    return found
