"""The `bidi` command: `up`, `migrate`, `status`.

Every expected failure prints one line naming the problem and exits 2.
`bidi up` stops on the first Ctrl-C (SIGINT, to the whole process group from
a terminal) or SIGTERM, part by part, and exits 0; a second one kills what
is left and exits 130.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import httpx
from pydantic import ValidationError

from core.errors import BidiError, ConfigError
from core.settings import Settings, load_settings

if TYPE_CHECKING:
    from serve.stack import Stack

EXIT_USAGE = 2
EXIT_FORCED = 130  # 128 + SIGINT, as a shell reports a job it interrupted


def say(line: str) -> None:
    print(line, flush=True)


def _write(line: str) -> None:
    """A line from a signal handler: print() may be in the middle of a line
    of the main thread, and would refuse the reentrant call."""
    os.write(sys.stdout.fileno(), f"{line}\n".encode())


class Interrupts:
    """The first SIGINT or SIGTERM asks for a stop (while starting, it
    unwinds the start as KeyboardInterrupt); the next one forces it."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.stopping = threading.Event()
        self.running = False  # started: the main thread waits on `stopping`

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping.is_set():
            killed = self.stack.kill()
            _write(f"forced: killed {', '.join(killed) or 'nothing (all had stopped)'}")
            os._exit(EXIT_FORCED)  # threads may be waiting inside Ray
        self.stopping.set()
        _write(f"stopping on {signal.Signals(signum).name} (again to force)...")
        if not self.running:
            raise KeyboardInterrupt


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

    stack = Stack(_settings(args), haproxy=not args.no_haproxy, report=say)
    interrupts = Interrupts(stack)
    interrupts.install()
    try:
        stack.start()
        if args.demo:
            demo = asyncio.run(seed_demo(stack.settings))
            password = demo.password or "(not kept: no demo-credentials.json in the data dir)"
            print(f"demo sign-in: {demo.email} / {password}")
            if demo.api_key:
                print(f"demo API key: {demo.api_key}")
            for note in demo.notes:
                print(f"demo note:  {note}")
            if demo.widget_test_url:
                print(f"widget:     {demo.widget_test_url}")
        print(f"Inbox:      {stack.api_url}/")
        print(f"API:        {stack.api_url}")
        print(f"API docs:   {stack.api_url}/docs")
        print(f"WebSocket:  {stack.ws_url}")
        if stack.dashboard_url:
            token = Path.home() / ".ray" / "auth_token"
            print(f"Ray:        {stack.dashboard_url} (sign in with the token in {token})")
        else:
            print("Ray:        dashboard not running (joined cluster or disabled)")
        print("Bidi is up. Ctrl-C stops it.", flush=True)
        interrupts.running = True
        interrupts.stopping.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    say("stopped")
    if stack.stuck:  # a thread still waits on Ray: do not wait for it at exit
        sys.stderr.flush()
        os._exit(0)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from serve.stack import Stack

    stack = Stack(_settings(args), report=say)
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
