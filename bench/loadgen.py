"""A small HTTP/1.1 keep-alive load generator for the benchmarks.

Runs in its own process (uvloop, raw streams) so the load it makes is
limited by the server, not by an HTTP client library's overhead.
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import time
from dataclasses import dataclass

from bench.cpu import cpu_seconds, spent


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    cpu: dict[str, float] | None = None  # CPU seconds per process group (bench.cpu)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   request: bytes) -> bool:
    """Send one raw request on a keep-alive connection, read its whole answer;
    whether it was a 2xx."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return head[9:10] == b"2"


async def _worker(host: str, port: int, requests: list[bytes], stop_at: float,
                  out: LoadResult, sample_every: int, offset: int = 0) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    n = 0
    try:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            if await exchange(reader, writer, requests[(offset + n) % len(requests)]):
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


def raw_request(method: str, host: str, port: int, path: str,
                headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _run(host: str, port: int, requests: list[bytes], connections: int,
               seconds: float, warmup: float, sample_every: int) -> LoadResult:
    if warmup:
        scratch = LoadResult(0, 0, 0, [])
        stop = time.monotonic() + warmup
        await asyncio.gather(*(_worker(host, port, requests, stop, scratch, 1_000_000, i * 7919)
                               for i in range(connections)))
    out = LoadResult(0, 0, seconds, [])
    stop = time.monotonic() + seconds
    before = cpu_seconds()
    await asyncio.gather(*(_worker(host, port, requests, stop, out, sample_every, i * 7919)
                           for i in range(connections)))
    out.cpu = spent(before, cpu_seconds())
    return out


def cpu_per_request(result: LoadResult) -> str:
    """`api 0.41 ms, postgres 0.38 ms, ...` of CPU per successful request."""
    if not result.cpu or not result.requests:
        return "n/a"
    return ", ".join(f"{name} {seconds / result.requests * 1000:.3f} ms"
                     for name, seconds in result.cpu.items())


def same_priority(nice: int) -> None:
    """The engine's Ray workers run at `nice` (settings.worker_niceness); the
    load generator gets the same priority, so neither side is favoured on the
    shared cores."""
    os.nice(max(0, nice - os.nice(0)))


def _child(conn: mp.connection.Connection, nice: int, *args: object) -> None:
    import uvloop

    same_priority(nice)
    result = uvloop.run(_run(*args))  # type: ignore[arg-type]
    conn.send(result)
    conn.close()


def http_load(host: str, port: int, path: str = "/", *, nice: int, connections: int = 32,
              seconds: float = 10.0, warmup: float = 2.0, requests: list[bytes] | None = None,
              sample_every: int = 10) -> LoadResult:
    """Hammer `GET path` (or cycle through raw `requests`) from a separate
    process; return what it counted. Any 2xx counts as a success."""
    requests = requests or [raw_request("GET", host, port, path)]
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, nice, host, port, requests, connections,
                                            seconds, warmup, sample_every))
    proc.start()
    result: LoadResult = parent.recv()
    proc.join()
    return result
