"""CPU time spent by the engine's processes over a benchmark phase, read from
/proc: a steadier figure than throughput on a noisy machine (CPU per request)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

GROUPS: dict[str, tuple[str, ...]] = {  # name -> parts of the command line (any)
    "api": ("ServeReplica:bidi:bidi-api",),
    "hosts": ("ray::ActorHost",),
    "relay": ("ray::RelayActor",),
    "baseline": ("bidi_baseline",),  # bench/baseline.py's MARKER
    # Postgres's own upkeep apart from the queries' backends.
    "pg-vacuum": ("postgres: autovacuum",),
    "pg-wal": ("postgres: walwriter", "postgres: checkpointer", "postgres: background writer"),
    "postgres": ("postgres",),
    "haproxy": ("haproxy",),
    "redis": ("redis-server",),
    "controller": ("ray::ServeController",), "proxy": ("ray::ProxyActor",),
    "haproxy-mgr": ("ray::HAProxyManager",),
    "ray-core": ("gcs_server", "raylet"),
    "ray": ("dashboard", "ray::", "log_monitor", "monitor.py"),
}
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far per group, and the whole machine's busy seconds."""
    found = dict.fromkeys([*GROUPS, "machine"], 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        for name, markers in GROUPS.items():
            if any(marker in cmdline for marker in markers):
                found[name] += (int(fields[11]) + int(fields[12])) / _TICK
                break
    cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    idle = int(cpu[3]) + int(cpu[4])
    found["machine"] = (sum(int(v) for v in cpu[:8]) - idle) / _TICK
    return found


def per_request_line(got: dict[str, Any]) -> str:
    """A phase's CPU ms per accepted request, by process group, busiest first."""
    n = max(1, int(got["accepted"]))
    parts = sorted(((v, k) for k, v in got["cpu"].items() if v > 0), reverse=True)
    return ", ".join(f"{k} {v / n * 1000:.3f}" for v, k in parts)


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in before}
