"""The processes an engine starts, found again by a mark they inherit.

Ray's workers rename themselves (`ray::ActorHost`) and leave the process
group of the driver, and HAProxy is a grandchild of one of them: neither the
command line nor the process tree finds them all once the driver or the
raylet is gone. The environment does: every process of a local cluster
inherits `MARK` from the engine that started it, naming the engine's pid and
data dir. An engine stops what bears its own mark; the next engine on the
same data dir stops what bears the mark of one that was killed.
"""
from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from pathlib import Path

import psutil

MARK = "BIDI_ENGINE"


def mark(data_dir: Path) -> dict[str, str]:
    """The variable the processes started now inherit."""
    return {MARK: f"{os.getpid()}:{data_dir}"}


def _mark_of(proc: psutil.Process) -> tuple[int, str] | None:
    try:
        value = proc.environ().get(MARK)
    except (psutil.Error, OSError):
        return None  # gone, a zombie, or another user's
    if not value:
        return None
    owner, _, data_dir = value.partition(":")
    return (int(owner), data_dir) if owner.isdigit() else None


def marked(data_dir: Path, *, owner: int | None = None) -> list[psutil.Process]:
    """Live processes marked for `data_dir` (by `owner` only when given),
    never this process."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        got = _mark_of(proc)
        if got is not None and got[1] == str(data_dir) and owner in (None, got[0]):
            found.append(proc)
    return found


def owner(proc: psutil.Process) -> int | None:
    """The pid of the engine whose mark `proc` bears."""
    got = _mark_of(proc)
    return got[0] if got is not None else None


def orphans(data_dir: Path) -> list[psutil.Process]:
    """Processes marked for `data_dir` by an engine that is no longer alive."""
    return [p for p in marked(data_dir) if not alive(owner(p) or 0)]


def unique(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    return list({p.pid: p for p in procs}.values())


def with_arg(name: str, fragment: str) -> list[psutil.Process]:
    """Processes called `name` with `fragment` in an argument (a private
    folder of ours names them for sure)."""
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        args = proc.info.get("cmdline") or []
        if proc.info.get("name") == name and any(fragment in arg for arg in args):
            found.append(proc)
    return found


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not: it only waits to be reaped)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def end(procs: Iterable[psutil.Process], grace: float = 3.0,
        sig: int = signal.SIGTERM) -> list[psutil.Process]:
    """Signal `procs` (SIGTERM: each may finish what it holds), SIGKILL those
    still running after `grace` seconds; return the ones that were running."""
    running = []
    for proc in procs:
        try:
            proc.send_signal(sig)
            running.append(proc)
        except psutil.Error:
            pass
    _, left = psutil.wait_procs(running, timeout=grace)
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(left, timeout=1.0)
    return running


def listening_on(procs: Iterable[psutil.Process], port: int) -> list[psutil.Process]:
    """Those of `procs` with a listening socket on `port`."""
    found = []
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
               for c in conns):
            found.append(proc)
    return found


def describe(procs: Iterable[psutil.Process]) -> str:
    """`haproxy (pid 12), raylet (pid 34)` for a report line."""
    parts = []
    for proc in procs:
        try:
            name = proc.name()
        except psutil.Error:
            name = "process"
        parts.append(f"{name} (pid {proc.pid})")
    return ", ".join(parts) or "nothing"
