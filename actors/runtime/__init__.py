"""The virtual-actor runtime: `host` (mailboxes, activation, passivation),
`remote` (the Ray actor around a host and its lifespan), `client`
(`ActorSystem`: batched tell/ask), `placement` (rendezvous hashing),
`retry` (the one retry policy), `startup` (retried starts), `workers`
(cluster-wide named workers), `actor` (`VirtualActor`), `protocol`, `metrics`.
"""

__all__ = [
    "actor", "client", "host", "metrics", "placement", "protocol", "remote", "retry", "startup",
    "workers"
]
