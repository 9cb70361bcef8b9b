"""Two Ray nodes on one machine: hosts spread over both, and the engine keeps
serving when one node goes away."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_hosts_spread_over_nodes_and_survive_a_node_removal(settings: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "BIDI_APP_DB_PASSWORD": settings.app_db_password.get_secret_value(),
        "PYTHONPATH": str(ROOT),
    })
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "actors" / "two_node.py")],
                          capture_output=True, text=True, env=env, timeout=240,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(set(seen["nodes"])) == 2, seen  # one host per node
    assert seen["owners"] == [0, 1]  # the traffic reached both hosts
    assert seen["before"] == [1] * 20
    assert len(seen["on_worker"]) == 1
    # after the node went away its host restarted on the head and answers:
    # its actors reactivated there (a Recorder starts empty: count 1 again),
    # the other host's actors kept their hot state (count 2)
    lost = seen["on_worker"][0]
    assert seen["after"] == [1 if owner == lost else 2 for owner in seen["key_owners"]]
    assert seen["nodes_after"] == [seen["head"], seen["head"]]
