"""Stopping what a process started: last first, each part within its time.

`Supervisor` is the process's one exit stack of parts. A part's stop runs in
a thread for a bounded time, so one that does not answer (Ray whose GCS is
gone waits a minute, then ends the process) is reported and left behind, the
next part still stops, and signals still reach the main thread.
`LocalCluster` finds the processes of a local Ray cluster, ours or left by an
engine that was killed on the same data dir, so that they can be ended by pid.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from core import processes
from core.paths import find_runtime_dir

HAPROXY_BUDGET = 28  # HAProxy adds a 56-char folder under this and caps socket paths at 97


class Supervisor:
    def __init__(self, report: Callable[[str], object]) -> None:
        self.report = report
        self.stuck = False  # a part did not answer in time: a thread may still wait on it
        self._parts = contextlib.ExitStack()
        self._deadline = 0.0

    def callback(self, stop: Callable[[], object]) -> None:
        """`stop` runs at `close()`, before those pushed earlier."""
        self._parts.callback(stop)

    def close(self, budget: float) -> None:
        """Stop every part, last first; the bounded ones share `budget` seconds."""
        self._deadline = time.monotonic() + budget
        parts, self._parts = self._parts, contextlib.ExitStack()
        parts.close()

    def bounded(self, what: str, stop: Callable[[], object], cap: float, *,
                budget: bool = True) -> None:
        """Run `stop` for at most `cap` seconds (within what is left of the
        budget unless `budget` is False) and report how it went in one line."""
        timeout = cap if not budget else max(1.0, min(cap, self._deadline - time.monotonic()))
        failure: list[BaseException] = []

        def run() -> None:
            try:
                stop()
            except BaseException as exc:  # reported, and the next part still stops
                failure.append(exc)

        began = time.monotonic()
        worker = threading.Thread(target=run, name=f"stop {what}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            self.stuck = True
            self.report(f"gave up on {what}: no answer within {timeout:.0f} s")
        elif failure:
            self.report(f"stopping {what} failed: {failure[0]!r}")
        else:
            self.report(f"stopped {what} ({time.monotonic() - began:.1f} s)")


class LocalCluster:
    """The processes of the local Ray cluster started from this process for
    `data_dir`: those bearing our mark, those seen under us (Ray's agents
    rename themselves over their environment, which loses the mark, and
    outlive a raylet that died first), and the HAProxy of this data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()  # as the mark names it, whoever started us
        self._seen: dict[int, psutil.Process] = {}

    def mark(self) -> None:
        os.environ.update(processes.mark(self.data_dir))  # the cluster inherits it

    def unmark(self) -> None:
        os.environ.pop(processes.MARK, None)  # what starts from now on is not Ray's

    @staticmethod
    def alive() -> bool:
        """False once the GCS or the raylet we started is gone: every call to
        Ray would wait a minute for them."""
        import ray

        node = getattr(ray._private.worker, "_global_node", None)
        if node is None:
            return False
        return all(info.process.poll() is None
                   for kind in ("gcs_server", "raylet")
                   for info in node.all_processes.get(kind, []))

    def haproxy(self) -> list[psutil.Process]:
        """The HAProxy processes of this data dir (their config is in our folder)."""
        folder = find_runtime_dir(self.data_dir, "haproxy", budget=HAPROXY_BUDGET)
        return processes.with_arg("haproxy", str(folder)) if folder is not None else []

    def remember(self, besides: set[int | None]) -> None:
        """Note the processes under this one, but `besides`."""
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process().children(recursive=True):
                if proc.pid not in besides:
                    self._seen.setdefault(proc.pid, proc)

    def ours(self, besides: set[int | None]) -> list[psutil.Process]:
        """Those still running, but `besides`."""
        seen = [p for p in self._seen.values() if p.is_running() and processes.alive(p.pid)]
        found = processes.unique(processes.marked(self.data_dir, owner=os.getpid())
                                 + seen + self.haproxy())
        return [p for p in found if p.pid not in besides]

    def leftovers(self) -> list[psutil.Process]:
        """What an engine killed on this data dir left running: its Ray
        processes and its HAProxy (which may still hold the API port)."""
        return processes.unique(processes.orphans(self.data_dir)
                                + [p for p in self.haproxy() if not _of_other_engine(p)])


def _of_other_engine(proc: psutil.Process) -> bool:
    owner = processes.owner(proc)
    return owner is not None and owner != os.getpid() and processes.alive(owner)
