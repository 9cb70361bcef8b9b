"""Finding an engine's processes by the mark they inherit, and ending them."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from core import processes

IGNORES_SIGTERM = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "print('ready', flush=True); time.sleep(120)")


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def child(started: list[subprocess.Popen[str]], env: dict[str, str] | None = None
          ) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", IGNORES_SIGTERM], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})
    started.append(proc)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def dead_pid() -> int:
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


def test_end_kills_what_ignores_sigterm(spawn: list[subprocess.Popen[str]]) -> None:
    proc = child(spawn)
    target = psutil.Process(proc.pid)
    ended = processes.end([target], grace=0.3)
    assert [p.pid for p in ended] == [proc.pid]
    assert not processes.alive(proc.pid)  # SIGTERM alone would have left it running


def test_orphans_are_the_marked_processes_of_a_dead_engine(
        spawn: list[subprocess.Popen[str]], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    mine = child(spawn, processes.mark(data_dir))
    orphan = child(spawn, {processes.MARK: f"{dead_pid()}:{data_dir}"})
    elsewhere = child(spawn, {processes.MARK: f"{dead_pid()}:{tmp_path / 'other'}"})

    assert [p.pid for p in processes.orphans(data_dir)] == [orphan.pid]
    assert [p.pid for p in processes.marked(data_dir, owner=os.getpid())] == [mine.pid]
    assert elsewhere.pid not in {p.pid for p in processes.marked(data_dir)}
    assert processes.owner(psutil.Process(mine.pid)) == os.getpid()
    assert processes.owner(psutil.Process(os.getpid())) is None  # not marked itself
