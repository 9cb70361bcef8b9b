"""Hop histograms: quantiles within a bucket's width, snapshots that add up
across processes and subtract to an interval, as bench/realtime.py reads them."""
from __future__ import annotations

import json

from core.timings import GROWTH, Timings, diff, mean, merge, quantile


def test_quantiles_fall_within_a_bucket_of_the_truth() -> None:
    timings = Timings()
    for ms in range(1, 1001):  # 1..1000 ms, once each
        timings.observe("commit", ms / 1000)
    snap = timings.snapshot()["commit"]
    for q, truth in ((0.5, 0.5), (0.99, 0.99), (1.0, 1.0)):
        got = quantile(snap, q)
        assert got is not None and truth <= got <= truth * GROWTH
    assert abs((mean(snap) or 0) - 0.5005) < 1e-9
    assert quantile({"count": 0, "sum": 0.0, "buckets": {}}, 0.5) is None


def test_snapshots_merge_across_processes_and_diff_to_an_interval() -> None:
    one, two = Timings(), Timings()
    one.observe("relay", 0.001, 3)
    before = json.loads(json.dumps(merge([one.snapshot(), two.snapshot()])))  # via Redis
    two.observe("relay", 0.002)
    one.observe("hub", 0.0001)
    after = merge([one.snapshot(), two.snapshot()])
    assert after["relay"]["count"] == 4
    interval = diff(after, merge([before]))
    assert interval["relay"]["count"] == 1 and interval["hub"]["count"] == 1
    got = quantile(interval["relay"], 0.5)
    assert got is not None and 0.002 <= got <= 0.002 * GROWTH
