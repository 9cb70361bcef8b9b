"""Host metrics exported through `ray.util.metrics` (so the Ray dashboard and
its Prometheus endpoint show them). Hot-path counts are kept in plain ints
and pushed once a second; turn latency is sampled (1 turn in 16)."""
from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass, field

from ray.util import metrics

LATENCY_BOUNDARIES_MS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000]
BATCH_BOUNDARIES: list[float] = [1, 10, 50, 100, 500, 1000, 2500, 5000, 10000]
SAMPLE_EVERY = 16


@dataclass
class HostMetrics:
    host: str
    activations: Tally[str] = field(default_factory=Tally)
    passivations: Tally[str] = field(default_factory=Tally)
    turns: int = 0
    _pushed_act: Tally[str] = field(default_factory=Tally)
    _pushed_pas: Tally[str] = field(default_factory=Tally)

    def __post_init__(self) -> None:
        tags = ("host", "kind")
        self._resident = metrics.Gauge("bidi_resident_actors", "virtual actors resident, by kind",
                                       tag_keys=tags)
        self._depth = metrics.Gauge("bidi_mailbox_depth", "messages queued in mailboxes",
                                    tag_keys=("host",))
        self._latency = metrics.Histogram("bidi_turn_latency_ms", "turn latency (sampled)",
                                          boundaries=LATENCY_BOUNDARIES_MS, tag_keys=("host",))
        self._batch = metrics.Histogram("bidi_batch_size", "envelopes per delivered batch",
                                        boundaries=BATCH_BOUNDARIES, tag_keys=("host",))
        self._activations = metrics.Counter("bidi_activations_total", "actor activations",
                                            tag_keys=tags)
        self._passivations = metrics.Counter("bidi_passivations_total", "actor passivations",
                                             tag_keys=tags)

    def turn(self, seconds: float) -> None:
        self._latency.observe(seconds * 1000, tags={"host": self.host})

    def batch(self, size: int) -> None:
        self._batch.observe(size, tags={"host": self.host})

    def push(self, resident: dict[str, int], depth: int) -> None:
        for kind, n in resident.items():
            self._resident.set(n, tags={"host": self.host, "kind": kind})
        self._depth.set(depth, tags={"host": self.host})
        for tally, pushed, counter in ((self.activations, self._pushed_act, self._activations),
                                       (self.passivations, self._pushed_pas, self._passivations)):
            for kind, n in tally.items():
                delta = n - pushed[kind]
                if delta:
                    counter.inc(delta, tags={"host": self.host, "kind": kind})
                    pushed[kind] = n
