"""Histograms a server keeps itself, in memory its worker processes share.

A server run as several workers (``corral server --workers N``) is scraped through
one socket, so any worker may answer ``/metrics``; each must report the whole
server. The parent maps one anonymous shared block before it forks (``Slots``); each
worker counts in its own slot and a scrape sums them. A worker that replaces a dead
one takes over its slot, so the counts never go back (Prometheus reads a drop as a
restart). A server of one process has one slot in private memory.
"""

from __future__ import annotations

import bisect
import ctypes
import mmap
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import HistogramMetricFamily

_DOUBLE = 8


class Slots:
    """``count`` slots of ``size`` doubles each, zeroed, shared with forked children."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size = count, size
        self._block = mmap.mmap(-1, max(1, count * size) * _DOUBLE)  # MAP_SHARED
        self._all: Any = (ctypes.c_double * (count * size)).from_buffer(self._block)

    def add(self, slot: int, n: int, value: float) -> None:
        """Add ``value`` to double ``n`` of ``slot`` (one writer per slot)."""
        self._all[slot * self.size + n] += value

    def read(self, n: int) -> float:
        """Double ``n`` summed over every slot."""
        return float(sum(self._all[slot * self.size + n] for slot in range(self.count)))


class Histogram:
    """Cumulative buckets and a sum, counted in one slot of ``slots`` per process."""

    def __init__(
        self,
        name: str,
        doc: str,
        buckets: Sequence[float],
        slots: Slots | None = None,
        slot: int = 0,
    ) -> None:
        self.name, self.doc, self.bounds = name, doc, tuple(buckets)
        width = len(self.bounds) + 2  # one per bound, +Inf, the sum
        self.slots = slots if slots is not None else Slots(1, width)
        if self.slots.size != width:
            raise ValueError(f"{name}: a slot of {self.slots.size} doubles, {width} needed")
        self.slot = slot
        self._lock = threading.Lock()

    @classmethod
    def width(cls, buckets: Sequence[float]) -> int:
        """The doubles one slot of a histogram with ``buckets`` takes."""
        return len(buckets) + 2

    def observe(self, value: float) -> None:
        at = bisect.bisect_left(self.bounds, value)  # the first bound >= value, else +Inf
        with self._lock:
            self.slots.add(self.slot, at, 1)
            self.slots.add(self.slot, len(self.bounds) + 1, value)

    def totals(self) -> tuple[list[float], float]:
        """Per-bucket counts (not cumulative; +Inf last) and the sum, over every slot."""
        counts = [self.slots.read(n) for n in range(len(self.bounds) + 1)]
        return counts, self.slots.read(len(self.bounds) + 1)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        counts, total = self.totals()
        cumulative, running = [], 0.0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), counts, strict=True):
            running += count
            cumulative.append((bound, running))
        yield HistogramMetricFamily(self.name, self.doc, buckets=cumulative, sum_value=total)
