"""Run as a script by test_cluster.py: a two-node Ray cluster on this machine
(`ray.cluster_utils.Cluster`) with the actor hosts on it. Prints one JSON line
with what it saw. Uses the Postgres/Redis named by DATABASE_URL/REDIS_URL."""
from __future__ import annotations

import asyncio
import json
import sys
import uuid

import ray
from ray.cluster_utils import Cluster

from actors.kinds import DEFAULT_KINDS
from actors.runtime.client import ActorSystem
from actors.runtime.remote import start_hosts
from actors.runtime.retry import RetryPolicy
from core.settings import load_settings
from tests.actors.kinds import TEST_KINDS, Append


async def traffic(system: ActorSystem, org: str, keys: list[str]) -> list[int]:
    answers = []
    for key in keys:
        async def call(timeout: float, key: str = key) -> int:
            return await system.ask("recorder", org, key, Append("s", 1), timeout=timeout)
        answers.append(await RetryPolicy(budget=90, max_delay=0.5).run(call, idempotent=True))
    return answers


def main() -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, namespace="bidi", logging_level="ERROR",
             log_to_driver=False)
    settings = load_settings(hosts=2)
    handles = start_hosts(settings, kinds=(*DEFAULT_KINDS, *TEST_KINDS))
    nodes = ray.get([h.node_id.remote() for h in handles])
    system = ActorSystem(2)
    keys = [str(uuid.uuid4()) for _ in range(20)]
    owners = {system.owner("recorder", k) for k in keys}
    org = str(uuid.uuid4())
    before = asyncio.run(traffic(system, org, keys))
    on_worker = [i for i, node in enumerate(nodes) if node == worker.node_id]
    cluster.remove_node(worker)
    system = ActorSystem(2)
    after = asyncio.run(traffic(system, org, keys))
    nodes_after = ray.get([h.node_id.remote() for h in handles], timeout=60)
    print(json.dumps({
        "nodes": nodes, "worker": worker.node_id, "head": cluster.head_node.node_id,
        "owners": sorted(owners), "key_owners": [system.owner("recorder", k) for k in keys],
        "before": before, "after": after,
        "on_worker": on_worker, "nodes_after": nodes_after,
    }))
    sys.stdout.flush()
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main()
