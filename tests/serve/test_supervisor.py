"""The exit stack of an engine's parts: last first, each within its time."""
from __future__ import annotations

import threading

from serve.supervisor import Supervisor


def test_parts_stop_last_first_and_one_that_hangs_is_left_behind() -> None:
    lines: list[str] = []
    parts = Supervisor(lines.append)
    release = threading.Event()
    stopped: list[str] = []

    def fails() -> None:
        raise RuntimeError("refused")

    parts.callback(lambda: parts.bounded("first", lambda: stopped.append("first"), 5.0))
    parts.callback(lambda: parts.bounded("hanging", release.wait, 0.1))
    parts.callback(lambda: parts.bounded("failing", fails, 5.0))
    try:
        parts.close(budget=5.0)
    finally:
        release.set()

    assert [line.split(" (")[0].split(":")[0] for line in lines] == [
        "stopping failing failed", "gave up on hanging", "stopped first"]
    assert "refused" in lines[0]
    assert stopped == ["first"]
    assert parts.stuck
    parts.close(budget=5.0)  # nothing left: a second stop does nothing
    assert len(lines) == 3
