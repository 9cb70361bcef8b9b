"""The whole engine on one machine, started and stopped in order: embedded
Postgres and Redis (unless URLs are given), migrations, Ray (local or
`RAY_ADDRESS`), Serve with the HAProxy ingress, the API deployment.

`bidi up`, the test fixtures and the benchmarks all start the engine with
this one class.

Each part, once started, is pushed on one exit stack: `stop()` unwinds it in
reverse order (Serve with its HAProxy, the outbox sweeper, the relay, the
actor hosts, Ray, Redis, Postgres) and reports one line per part. Every step
is bounded in time and a part of Ray that is gone (Ctrl-C reaches Ray's own
processes too) is skipped, not waited for; what Ray leaves behind is found by
the mark its processes inherit (`core.processes`) and ended by pid. A start
first ends what an engine killed on the same data dir left running.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import psutil

from actors.kinds import DEFAULT_KINDS
from actors.runtime.actor import VirtualActor
from actors.runtime.host import HostConfig
from actors.runtime.remote import start_hosts, stop_hosts
from core import processes
from core.errors import StartupError
from core.paths import runtime_dir
from core.settings import Settings, prepare_data_dir
from serve import direct
from serve.supervisor import HAPROXY_BUDGET, LocalCluster, Supervisor
from storage.db import connect_admin
from storage.embedded import EmbeddedPostgres, EmbeddedRedis
from storage.migrate import migrate

NAMESPACE = "bidi"
STOP_BUDGET = 10.0  # seconds for the parts in Ray; Redis and Postgres stop after them
log = logging.getLogger("bidi")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# Below Linux's default ephemeral range (32768-60999): a port picked here and
# bound seconds later cannot meanwhile become the local end of some outgoing
# connection, as a `free_port()` (bind to 0) can: HAProxy's metrics frontend
# once failed to start on "address in use" that way.
LISTEN_PORTS = (20_000, 32_000)


def listen_port(host: str = "127.0.0.1") -> int:
    """A port, outside the ephemeral range, free now, for a server started later."""
    for _ in range(200):
        port = random.randrange(*LISTEN_PORTS)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    return free_port(host)


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


def haproxy_threads() -> int:
    """A quarter of the cores, 1 to 4: HAProxy forwards; the replicas compute."""
    return max(1, min(4, (os.cpu_count() or 1) // 4))


def serve_env(settings: Settings, haproxy: bool) -> dict[str, str]:
    """Environment for the Ray processes Serve starts (read at their import)."""
    env = {
        "RAY_SERVE_ENABLE_HA_PROXY": "1" if haproxy else "0",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1" if haproxy else "0",
        "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": str(settings.serve_control_interval),
        "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": direct.IMPORT_PATH,
        # Read by the raylet of a cluster we start (the workers it spawns).
        "RAY_worker_niceness": str(settings.worker_niceness),
    }
    if haproxy:
        base = runtime_dir(settings.data_dir, "haproxy", budget=HAPROXY_BUDGET)
        base.mkdir(parents=True, exist_ok=True)
        env.update({
            "RAY_SERVE_HAPROXY_MAXCONN": str(settings.haproxy_maxconn),
            "RAY_SERVE_HAPROXY_METRICS_ENABLED": "1" if settings.ingress_metrics else "0",
            # Ray's default is 4 threads; on a small host they only contend
            # with the replicas for the cores (fan-out: 15% more deliveries on 2).
            "RAY_SERVE_HAPROXY_NBTHREAD": str(haproxy_threads()),
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(base / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(base / "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(base),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(base / "server-state"),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(listen_port()),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(listen_port()),
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
    report: Callable[[str], object] = field(default=log.info, repr=False)
    _pg: EmbeddedPostgres | None = field(default=None, repr=False)
    _redis: EmbeddedRedis | None = field(default=None, repr=False)
    _ray_started: bool = False
    _serve_started: bool = False
    _hosts_started: bool = False
    _relay_started: bool = False
    _outbox_started: bool = False
    dashboard_url: str | None = None

    def __post_init__(self) -> None:
        self._parts = Supervisor(self.report)
        self._cluster = LocalCluster(self.settings.data_dir)

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
            self._parts.callback(self._stop_postgres)
            update["database_url"] = self._pg.start()
            if self._pg.stale:
                self.report(self._pg.stale)
            if self._pg.adopted:
                self.report(f"took over Postgres (pid {self._pg.pid}), left running in "
                            f"{self.settings.data_dir} by an engine that was killed")
        if self.settings.redis_url is None:
            self._redis = EmbeddedRedis(self.settings.data_dir)
            self._parts.callback(self._stop_redis)
            update["redis_url"] = self._redis.start()
            if self._redis.adopted:
                self.report(f"took over Redis (pid {self._redis.pid}), left running in "
                            f"{self.settings.data_dir} by an engine that was killed")
        self.settings = self.settings.model_copy(update=update)
        return asyncio.run(run_migrations(self.settings))

    def start(self) -> Stack:
        try:
            self._end_leftovers()
            if self.serve:
                ensure_port_free(self.settings.host, self.settings.port)
            self.start_storage()
            self._start_ray()
            self._parts.callback(self._stop_ray)
            self._parts.callback(self._stop_hosts)
            self._start_hosts()
            self._parts.callback(self._stop_relay)
            self._start_relay()
            self._parts.callback(self._stop_outbox)
            self._start_outbox()
            if self.serve:
                self._parts.callback(self._stop_serve)
                self._start_serve()
                self.wait_ready()
            if self.settings.ray_address is None:
                self._cluster.remember(besides=self._storage_pids())
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
            self._cluster.mark()
            dashboard_port = self.settings.dashboard_port
            if self.dashboard:
                ensure_port_free(self.settings.host, dashboard_port)
            kwargs.update(
                # "local": a new cluster of our own, never one found on the
                # machine (`ray start`'s, another engine's).
                address="local",
                include_dashboard=self.dashboard,
                dashboard_host=self.settings.host,
                dashboard_port=dashboard_port,
                object_store_memory=512 * 1024 * 1024,
            )
        else:
            kwargs["address"] = self.settings.ray_address
        # ray.init() makes SIGTERM a sys.exit() wherever the main thread is:
        # the process's own handler (the CLI's orderly stop) stays.
        on_term = signal.getsignal(signal.SIGTERM)
        try:
            context = ray.init(**kwargs)  # type: ignore[arg-type]
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise StartupError(f"cannot start or join Ray: {exc}") from exc
        finally:
            if threading.current_thread() is threading.main_thread() and on_term is not None:
                signal.signal(signal.SIGTERM, on_term)
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
        """Stop what was started, last first; each part within its time."""
        if self._ray_started and self.settings.ray_address is None:
            self._cluster.remember(besides=self._storage_pids())
        self._parts.close(STOP_BUDGET)

    @property
    def stuck(self) -> bool:
        """A part did not answer: a thread may still wait inside Ray."""
        return self._parts.stuck

    def kill(self) -> list[str]:
        """What a second Ctrl-C does: end at once all that is left (Postgres
        by its immediate shutdown, which keeps the data); return their names."""
        procs = self._cluster.ours(besides=self._storage_pids())
        if self._redis is not None and self._redis.pid is not None:
            procs += _existing(self._redis.pid)
        names = [processes.describe([p]) for p in procs]
        processes.end(procs, grace=0.5, sig=signal.SIGKILL)
        for proc in _existing(self._pg.pid if self._pg is not None else None):
            names.append(f"Postgres (pid {proc.pid})")
            processes.end([proc], grace=5.0, sig=signal.SIGQUIT)
        return names

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # The parts' stops, in the order stop() runs them.

    def _stop_serve(self) -> None:
        if not self._serve_started:
            return
        self._serve_started = False
        from ray import serve

        from serve.ingress import APP_NAME

        if self.settings.ray_address is not None:
            # A shared cluster outlives us: remove only our application.
            self._ray_part(f"the Serve application {APP_NAME}",
                           lambda: serve.delete(APP_NAME), 5.0)
        elif self.haproxy:
            # serve.shutdown() would wait out the ~30 s drain Serve gives a
            # replica behind HAProxy (made for rolling updates); the cluster
            # ends next anyway. Closing the ingress first refuses new calls.
            ingress = self._cluster.haproxy()
            self._parts.bounded(f"Serve's HAProxy ingress ({processes.describe(ingress)})",
                          lambda: processes.end(ingress, grace=2.0), 3.0)
        else:
            self.report("Serve: its proxy and replicas stop with Ray")

    def _stop_outbox(self) -> None:
        if self._outbox_started:
            from actors.outbox import stop_outbox

            self._outbox_started = False
            self._ray_part("the outbox sweeper", lambda: stop_outbox(timeout=2.0), 3.0)

    def _stop_relay(self) -> None:
        if self._relay_started:
            from actors.relay import stop_relay

            self._relay_started = False
            self._ray_part("the event relay", lambda: stop_relay(timeout=2.0), 3.0)

    def _stop_hosts(self) -> None:
        if self._hosts_started:
            self._hosts_started = False  # their shutdown flushes actor state first
            self._ray_part("the actor hosts",
                           lambda: stop_hosts(self.settings.hosts, timeout=4.0), 5.0)

    def _stop_ray(self) -> None:
        if not self._ray_started:
            return
        self._ray_started = False
        import ray

        local = self.settings.ray_address is None
        if self._ray_alive():
            self._parts.bounded("Ray" if local else "the connection to Ray", ray.shutdown, 4.0)
        else:
            self._parts.stuck = True  # ray.shutdown() would wait for the GCS, here and at exit
            self.report("skipped Ray's own shutdown: its GCS or raylet is gone")
        if local:
            self._cluster.unmark()
            left = self._cluster.ours(besides=self._storage_pids())
            if left:
                names = processes.describe(left)
                self._parts.bounded(f"what Ray left running: {names}",
                              lambda: processes.end(left, grace=2.0), 4.0, budget=False)

    def _stop_redis(self) -> None:
        if self._redis is not None and self._redis.pid is not None:
            self._parts.bounded(f"Redis (pid {self._redis.pid})", self._redis.stop, 8.0,
                          budget=False)
        self._redis = None

    def _stop_postgres(self) -> None:
        if self._pg is not None and self._pg.pid is not None:
            self._parts.bounded(f"Postgres (pid {self._pg.pid})", self._pg.stop, 15.0,
                          budget=False)
        self._pg = None

    # Helpers of the stops.

    def _ray_part(self, what: str, stop: Callable[[], object], cap: float) -> None:
        if self._ray_alive():
            self._parts.bounded(what, stop, cap)
        else:
            self.report(f"skipped {what}: Ray's GCS or raylet is gone")

    def _ray_alive(self) -> bool:
        return self.settings.ray_address is not None or self._cluster.alive()

    def _storage_pids(self) -> set[int | None]:
        return {self._redis.pid if self._redis else None, self._pg.pid if self._pg else None}

    def _end_leftovers(self) -> None:
        """End what an engine killed on this data dir left running (its
        Postgres and Redis are taken over by their start instead)."""
        left = self._cluster.leftovers()
        if not left:
            return
        names = processes.describe(left)
        port = [p.pid for p in processes.listening_on(left, self.settings.port)]
        processes.end(left, grace=2.0)
        held = f"; pid {port[0]} held port {self.settings.port}" if port else ""
        self.report(f"stopped what an engine killed on {self.settings.data_dir} left "
                    f"running: {names}{held}")


def _existing(pid: int | None) -> list[psutil.Process]:
    try:
        return [psutil.Process(pid)] if pid is not None else []
    except psutil.Error:
        return []
