"""A small HTTP/1.1 keep-alive load generator for the benchmarks.

Runs in its own process (uvloop, raw streams) so the load it makes is
limited by the server, not by an HTTP client library's overhead.
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from dataclasses import dataclass


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def _worker(host: str, port: int, request: bytes, stop_at: float,
                  out: LoadResult, sample_every: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    n = 0
    try:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if head[9:12] == b"200":
                out.requests += 1
            else:
                out.errors += 1
            n += 1
            if n % sample_every == 0:
                out.latencies_ms.append((time.perf_counter() - started) * 1000)
    except (ConnectionError, asyncio.IncompleteReadError):
        out.errors += 1
    finally:
        writer.close()


async def _run(host: str, port: int, path: str, connections: int,
               seconds: float, warmup: float) -> LoadResult:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    if warmup:
        scratch = LoadResult(0, 0, 0, [])
        stop = time.monotonic() + warmup
        await asyncio.gather(*(_worker(host, port, request, stop, scratch, 1_000_000)
                               for _ in range(connections)))
    out = LoadResult(0, 0, seconds, [])
    stop = time.monotonic() + seconds
    await asyncio.gather(*(_worker(host, port, request, stop, out, 10)
                           for _ in range(connections)))
    return out


def _child(conn: mp.connection.Connection, *args: object) -> None:
    import uvloop

    result = uvloop.run(_run(*args))  # type: ignore[arg-type]
    conn.send(result)
    conn.close()


def http_load(host: str, port: int, path: str, *, connections: int = 32,
              seconds: float = 10.0, warmup: float = 2.0) -> LoadResult:
    """Hammer `GET path` from a separate process; return what it counted."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child,
                       args=(child, host, port, path, connections, seconds, warmup))
    proc.start()
    result: LoadResult = parent.recv()
    proc.join()
    return result
