"""`bidi up` stopped as a terminal stops it: Ctrl-C is SIGINT to the whole
process group (Ray's own processes get it too). Each test starts a whole
engine of its own (its own data dir, ports and local Ray cluster; never the
session's), so there are only these three."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from core.processes import alive
from serve.stack import free_port
from tests.waiting import eventually

BIDI = Path(sys.executable).parent / "bidi"
STOP_WITHIN = 15.0
START_WITHIN = 240.0
PARTS_IN_ORDER = ("stopped Serve's HAProxy ingress", "the outbox sweeper", "the event relay",
                  "the actor hosts", "Ray", "Redis", "Postgres")


@dataclass
class Engine:
    data_dir: Path
    port: int
    log: Path
    proc: subprocess.Popen[bytes] = field(init=False)

    def start(self) -> Engine:
        # The session engine's Ray address and mark must not reach this one.
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "REDIS_URL", "RAY_ADDRESS", "BIDI_ENGINE")}
        env.update(BIDI_HOSTS="1", BIDI_DASHBOARD_PORT=str(free_port()))
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(BIDI), "up", "--data-dir", str(self.data_dir), "--port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                # What `setsid` does: a group of its own, like a job of a terminal.
                start_new_session=True)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_up(self) -> None:
        await eventually(lambda: "Bidi is up" in self.output() or self.proc.poll() is not None,
                         timeout=START_WITHIN, what="bidi up printing its URLs")
        assert self.proc.poll() is None, self.output()

    async def wait_exit(self, timeout: float) -> int:
        await eventually(lambda: self.proc.poll() is not None, timeout=timeout,
                         what=f"bidi exiting\n{self.output()}")
        return self.proc.returncode

    def processes(self) -> list[psutil.Process]:
        """All that this engine started: its process group, everything under
        it, and the Postgres server (which leaves the group to run alone)."""
        found = {}
        for proc in psutil.process_iter():
            try:
                if os.getpgid(proc.pid) == self.proc.pid:
                    found[proc.pid] = proc
            except OSError:
                pass
        root = psutil.Process(self.proc.pid)
        found.update({p.pid: p for p in root.children(recursive=True)})
        postmaster = self.data_dir / "postgres" / "postmaster.pid"
        pid = int(postmaster.read_text().splitlines()[0])
        found[pid] = psutil.Process(pid)
        return list(found.values())


def survivors(procs: list[psutil.Process]) -> list[str]:
    return [f"{p.pid} {p.name()}" for p in procs if p.is_running() and alive(p.pid)]


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def assert_stopped_in_order(output: str) -> None:
    lines = output[output.index("stopping on"):].splitlines()
    where = []
    for part in PARTS_IN_ORDER:
        hits = [i for i, line in enumerate(lines)
                if line.startswith(("stopped ", "skipped ")) and part in line]
        assert hits, f"no line for {part}:\n{output}"
        where.append(hits[0])
    assert where == sorted(where), output
    assert "stopped" in lines, output


def engine(tmp_path: Path) -> Engine:
    return Engine(data_dir=tmp_path / "data", port=free_port(), log=tmp_path / "bidi.log")


async def test_ctrl_c_stops_everything_in_order(tmp_path: Path) -> None:
    bidi = engine(tmp_path).start()
    await bidi.wait_up()
    started = bidi.processes()
    os.killpg(bidi.proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
    assert await bidi.wait_exit(STOP_WITHIN) == 0, bidi.output()
    assert port_free(bidi.port)
    assert survivors(started) == []
    assert_stopped_in_order(bidi.output())
    assert "Traceback" not in bidi.output()


async def test_sigterm_stops_everything_when_ray_died_first(tmp_path: Path) -> None:
    bidi = engine(tmp_path).start()
    await bidi.wait_up()
    started = bidi.processes()
    for proc in started:  # a Ray that lost its core: every call to it would wait
        if proc.name() in ("gcs_server", "raylet"):
            proc.kill()
    os.kill(bidi.proc.pid, signal.SIGTERM)
    assert await bidi.wait_exit(STOP_WITHIN) == 0, bidi.output()
    assert port_free(bidi.port)
    assert survivors(started) == []
    out = bidi.output()
    assert "skipped the actor hosts: Ray's GCS or raylet is gone" in out
    assert "stopped Redis" in out and "stopped Postgres" in out


async def test_start_after_kill_9_takes_over_and_stops_cleanly(tmp_path: Path) -> None:
    first = engine(tmp_path).start()
    await first.wait_up()
    started = first.processes()
    os.killpg(first.proc.pid, signal.SIGKILL)
    assert await first.wait_exit(STOP_WITHIN) == -signal.SIGKILL
    assert survivors(started), "nothing outlived kill -9: this test would prove nothing"

    (tmp_path / "notes.txt").write_text("kept")
    second = Engine(data_dir=first.data_dir, port=first.port,
                    log=tmp_path / "second.log").start()
    await second.wait_up()
    out = second.output()
    assert f"stopped what an engine killed on {first.data_dir} left running" in out, out
    assert "took over Postgres" in out and "took over Redis" in out, out
    again = second.processes()
    os.killpg(second.proc.pid, signal.SIGINT)
    assert await second.wait_exit(STOP_WITHIN) == 0, second.output()
    assert port_free(second.port)
    assert survivors(started + again) == []
    assert (first.data_dir / "postgres" / "PG_VERSION").exists()
    assert (first.data_dir / "secrets.json").exists()
