"""The whole engine on one machine, started and stopped in order: embedded
Postgres and Redis (unless URLs are given), migrations, Ray (local or
`RAY_ADDRESS`), Serve with the HAProxy ingress, the API deployment.

`bidi up`, the test fixtures and the benchmarks all start the engine with
this one class.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from actors.kinds import DEFAULT_KINDS
from actors.runtime.actor import VirtualActor
from actors.runtime.host import HostConfig
from actors.runtime.remote import start_hosts, stop_hosts
from core.errors import StartupError
from core.paths import runtime_dir
from core.settings import Settings, prepare_data_dir
from storage.db import connect_admin
from storage.embedded import EmbeddedPostgres, EmbeddedRedis
from storage.migrate import migrate

NAMESPACE = "bidi"
log = logging.getLogger("bidi")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"port {port} on {host} is in use") from exc
            raise StartupError(f"cannot bind {host}:{port}: {exc.strerror}") from exc


async def run_migrations(settings: Settings) -> list[str]:
    assert settings.database_url is not None
    conn = await connect_admin(settings.database_url)
    try:
        return await migrate(conn, app_password=settings.app_db_password.get_secret_value() or None)
    finally:
        await conn.close()


def serve_env(settings: Settings, haproxy: bool) -> dict[str, str]:
    """Environment for the Ray processes Serve starts (read at their import)."""
    env = {
        "RAY_SERVE_ENABLE_HA_PROXY": "1" if haproxy else "0",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1" if haproxy else "0",
    }
    if haproxy:
        # HAProxy adds a 56-char folder under this and caps socket paths at 97.
        base = runtime_dir(settings.data_dir, "haproxy", budget=28)
        base.mkdir(parents=True, exist_ok=True)
        env.update({
            "RAY_SERVE_HAPROXY_MAXCONN": str(settings.haproxy_maxconn),
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(base / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(base / "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(base),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(base / "server-state"),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        })
    return env


@dataclass
class Stack:
    settings: Settings
    haproxy: bool = True
    dashboard: bool = True
    serve: bool = True
    kinds: tuple[type[VirtualActor], ...] = DEFAULT_KINDS
    host_config: HostConfig | None = None
    ready_timeout: float = 120.0
    _pg: EmbeddedPostgres | None = field(default=None, repr=False)
    _redis: EmbeddedRedis | None = field(default=None, repr=False)
    _ray_started: bool = False
    _serve_started: bool = False
    _hosts_started: bool = False
    _relay_started: bool = False
    _outbox_started: bool = False
    dashboard_url: str | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.settings.host}:{self.settings.port}/v1/ws"

    def start_storage(self) -> list[str]:
        """Data dir, embedded services and migrations: what `bidi migrate` needs.
        Fills in `self.settings`; returns the migrations applied now."""
        self.settings = prepare_data_dir(self.settings)
        update: dict[str, str] = {}
        if self.settings.database_url is None:
            self._pg = EmbeddedPostgres(self.settings.data_dir)
            update["database_url"] = self._pg.start()
        if self.settings.redis_url is None:
            self._redis = EmbeddedRedis(self.settings.data_dir)
            update["redis_url"] = self._redis.start()
        self.settings = self.settings.model_copy(update=update)
        return asyncio.run(run_migrations(self.settings))

    def start(self) -> Stack:
        try:
            if self.serve:
                ensure_port_free(self.settings.host, self.settings.port)
            self.start_storage()
            self._start_ray()
            self._start_hosts()
            self._start_relay()
            self._start_outbox()
            if self.serve:
                self._start_serve()
                self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_ray(self) -> None:
        import ray

        env = serve_env(self.settings, self.haproxy)
        os.environ.update(env)  # a local cluster's processes inherit this
        kwargs: dict[str, object] = {
            "namespace": NAMESPACE,
            "runtime_env": {"env_vars": env},
            "logging_level": logging.WARNING,
            "log_to_driver": False,
        }
        if self.settings.ray_address is None:
            dashboard_port = self.settings.dashboard_port
            if self.dashboard:
                ensure_port_free(self.settings.host, dashboard_port)
            kwargs.update(
                include_dashboard=self.dashboard,
                dashboard_host=self.settings.host,
                dashboard_port=dashboard_port,
                object_store_memory=512 * 1024 * 1024,
            )
        else:
            kwargs["address"] = self.settings.ray_address
        try:
            context = ray.init(**kwargs)  # type: ignore[arg-type]
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise StartupError(f"cannot start or join Ray: {exc}") from exc
        self._ray_started = True
        url = getattr(context, "dashboard_url", None)
        self.dashboard_url = f"http://{url}" if url else None

    def _start_hosts(self) -> None:
        import ray

        from actors.runtime.client import NAMESPACE, host_name

        try:
            ray.get_actor(host_name(0), namespace=NAMESPACE)
        except ValueError:
            self._hosts_started = True  # none yet: they are ours to stop
        start_hosts(self.settings, kinds=self.kinds, config=self.host_config)

    def _start_relay(self) -> None:
        from actors.relay import start_relay

        self._relay_started = start_relay(self.settings)

    def _start_outbox(self) -> None:
        from actors.outbox import start_outbox

        self._outbox_started = start_outbox(self.settings)

    def _start_serve(self) -> None:
        from ray import serve

        from serve.ingress import APP_NAME, deployment

        serve.start(http_options={"host": self.settings.host, "port": self.settings.port})
        self._serve_started = True
        app = deployment(self.settings).bind(self.settings)
        serve.run(app, name=APP_NAME, route_prefix="/")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                resp = httpx.get(f"{self.api_url}/readyz", timeout=5.0)
                if resp.status_code == 200:
                    return
                last = resp.text
            except httpx.HTTPError as exc:
                last = str(exc) or type(exc).__name__
            time.sleep(0.25)
        raise StartupError(f"the API did not become ready at {self.api_url}: {last}")

    def stop(self) -> None:
        if self._serve_started and self.settings.ray_address is not None:
            # A shared cluster outlives us: remove only our application.
            from ray import serve

            from serve.ingress import APP_NAME

            serve.delete(APP_NAME)
        self._serve_started = False
        if self._outbox_started:
            from actors.outbox import stop_outbox

            stop_outbox()
            self._outbox_started = False
        if self._relay_started:
            from actors.relay import stop_relay

            stop_relay()
            self._relay_started = False
        if self._hosts_started:
            stop_hosts(self.settings.hosts)  # flushes actor state first
            self._hosts_started = False
        if self._ray_started:
            import ray

            ray.shutdown()  # a local cluster: its Serve goes with it
            self._ray_started = False
            _kill_orphans(runtime_dir(self.settings.data_dir, "haproxy", budget=28))
        for svc in (self._redis, self._pg):
            if svc is not None:
                svc.stop()
        self._redis = self._pg = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_orphans(haproxy_dir: Path) -> None:
    """HAProxy is a grandchild of Ray's worker: it can outlive the cluster."""
    import psutil

    marker = str(haproxy_dir)
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "haproxy" and any(marker in arg for arg in cmdline):
            with contextlib.suppress(psutil.Error):
                proc.kill()
