"""GET /healthz requests/s through Serve with the HAProxy ingress on vs off.

Starts the whole engine twice in one run (same embedded databases), once per
ingress mode, and drives each with the same load from a separate process.
Last line: {"haproxy_rps", "default_rps", "ratio"}.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

# bench/ holds email.py and telegram.py, which would shadow the standard
# library's `email` and the Bot API client's `telegram`: off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import http_load  # noqa: E402
from core.settings import load_settings  # noqa: E402
from serve.stack import Stack, free_port  # noqa: E402


def measure(data_dir: Path, haproxy: bool, seconds: float, connections: int) -> float:
    settings = load_settings(data_dir=str(data_dir), port=free_port(),
                             dashboard_port=free_port())
    with Stack(settings, haproxy=haproxy, dashboard=False) as stack:
        result = http_load(stack.settings.host, stack.settings.port, "/healthz",
                           nice=stack.settings.worker_niceness, connections=connections,
                           seconds=seconds, warmup=3.0)
    mode = "haproxy" if haproxy else "default"
    lat = sorted(result.latencies_ms) or [0.0]
    print(f"{mode:8s} {result.rps:8.0f} req/s  errors={result.errors}  "
          f"p50={lat[len(lat) // 2]:.1f} ms  p99={lat[int(len(lat) * 0.99)]:.1f} ms",
          flush=True)
    return result.rps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bidi-bench-") as tmp:
        data_dir = Path(tmp)
        haproxy = measure(data_dir, True, args.seconds, args.connections)
        default = measure(data_dir, False, args.seconds, args.connections)
    print(json.dumps({"haproxy_rps": round(haproxy, 1), "default_rps": round(default, 1),
                      "ratio": round(haproxy / default, 2) if default else 0.0}))


if __name__ == "__main__":
    main()
