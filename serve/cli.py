"""The `bidi` command: `up`, `migrate`, `status`.

Every expected failure prints one line naming the problem and exits 2.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import httpx
from pydantic import ValidationError

from core.errors import BidiError, ConfigError
from core.settings import Settings, load_settings

EXIT_USAGE = 2


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
            data_dir=getattr(args, "data_dir", None),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from None


def cmd_up(args: argparse.Namespace) -> int:
    from serve.demo import seed_demo
    from serve.stack import Stack

    stack = Stack(_settings(args), haproxy=not args.no_haproxy)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stack.start()
        if args.demo:
            org = asyncio.run(seed_demo(stack.settings))
            print(f"demo org:   {org}")
        print(f"API:        {stack.api_url}")
        print(f"API docs:   {stack.api_url}/docs")
        print(f"WebSocket:  {stack.ws_url}")
        if stack.dashboard_url:
            token = Path.home() / ".ray" / "auth_token"
            print(f"Ray:        {stack.dashboard_url} (sign in with the token in {token})")
        else:
            print("Ray:        dashboard not running (joined cluster or disabled)")
        print("Bidi is up. Ctrl-C stops it.", flush=True)
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping...", file=sys.stderr)
        stack.stop()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from serve.stack import Stack

    stack = Stack(_settings(args))
    try:
        applied = stack.start_storage()
        print(f"migrations applied now: {', '.join(applied) or 'none (up to date)'}")
    finally:
        stack.stop()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    url = f"http://{settings.host}:{settings.port}/readyz"
    try:
        resp = httpx.get(url, timeout=5.0)
    except httpx.HTTPError as exc:
        print(f"API at {url}: not answering ({exc or type(exc).__name__})")
        return 1
    body = resp.json()
    if resp.status_code == 200:
        checks = ", ".join(f"{k}={v}" for k, v in body["checks"].items())
        print(f"API at {url}: ready ({checks})")
        return 0
    print(f"API at {url}: {body.get('error', {}).get('message', resp.text)}")
    return 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="bidi", description="Bidi messaging engine")
    sub = top.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", help="address to serve on (default 127.0.0.1)")
        p.add_argument("--port", type=int, help="API port (default 8000)")
        p.add_argument("--data-dir", help="data dir (default ./.bidi)")

    up = sub.add_parser("up", help="start the whole engine")
    common(up)
    up.add_argument("--demo", action="store_true", help="seed a demo organization")
    up.add_argument("--no-haproxy", action="store_true", help="use Serve's default proxy")
    up.set_defaults(func=cmd_up)
    mig = sub.add_parser("migrate", help="apply database migrations")
    common(mig)
    mig.set_defaults(func=cmd_migrate)
    st = sub.add_parser("status", help="ask a running engine whether it is ready")
    common(st)
    st.set_defaults(func=cmd_status)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BidiError as exc:
        print(f"bidi: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
