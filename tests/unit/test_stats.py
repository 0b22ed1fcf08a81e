"""The server's own histograms: buckets as Prometheus counts them, shared by workers."""

from __future__ import annotations

import os

from scheduler.runtime import ServerMetrics
from scheduler.stats import Histogram, Slots


def _cumulative(histogram: Histogram) -> dict[str, float]:
    (family,) = histogram.collect()
    return {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}


def _sum(histogram: Histogram) -> float:
    (family,) = histogram.collect()
    return next(s.value for s in family.samples if s.name.endswith("_sum"))


def test_a_value_counts_in_the_first_bucket_whose_bound_it_does_not_pass() -> None:
    histogram = Histogram("h_seconds", "doc", (0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 3.0):
        histogram.observe(value)
    assert _cumulative(histogram) == {"0.1": 2, "1.0": 4, "+Inf": 5}
    assert _sum(histogram) == 4.65


def test_each_worker_counts_in_its_slot_and_any_reads_them_all() -> None:
    buckets = (0.1, 1.0)
    slots = Slots(2, Histogram.width(buckets))
    parent = Histogram("h_seconds", "doc", buckets, slots, 0)
    parent.observe(0.5)
    pid = os.fork()
    if pid == 0:  # a forked worker, as ``corral server --workers`` makes them
        child = Histogram("h_seconds", "doc", buckets, slots, 1)
        child.observe(0.05)
        child.observe(2.0)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _cumulative(parent) == {"0.1": 1, "1.0": 2, "+Inf": 3}
    assert _sum(parent) == 2.55


def test_a_slot_of_the_wrong_width_is_refused() -> None:
    try:
        Histogram("h_seconds", "doc", (0.1, 1.0), Slots(2, 3), 0)
    except ValueError as exc:
        assert "h_seconds" in str(exc)
    else:
        raise AssertionError("a slot too narrow for the buckets was taken")


def test_the_server_instruments_share_when_made_for_workers() -> None:
    shared = ServerMetrics.share(3)
    first, third = ServerMetrics(shared, 0), ServerMetrics(shared, 2)
    first.sync_duration.observe(0.002)
    third.sync_duration.observe(0.004)
    third.cycle_duration.observe(0.3)
    assert _cumulative(first.sync_duration)["+Inf"] == 2
    assert _cumulative(first.cycle_duration)["+Inf"] == 1
    assert _cumulative(ServerMetrics().sync_duration)["+Inf"] == 0  # a server alone: its own
