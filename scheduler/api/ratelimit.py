"""Submit rate limits: one token bucket per caller, in this server process.

``--submit-rate 100/s`` gives each user a bucket of 100 jobs that refills at 100 per
second; ``600/m`` holds 600 and refills 10 per second. A batch or an array takes one
token per job, all or none. Over the limit the request is refused with 429 and a
``Retry-After`` (seconds) saying when it would pass. Each server of several on one
PostgreSQL keeps its own buckets: a user's limit there is per server.

    bucket of 2, 1/s: t=0 take 2 -> ok (0 left); t=0.5 take 1 -> 429, retry after 0.5 s
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from scheduler.domain.errors import Invalid, TooManyRequests

UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0}
MAX_BUCKETS = 100_000  # callers remembered; a full bucket is forgotten first


@dataclass(frozen=True)
class Rate:
    per_s: float
    burst: int


def parse_rate(text: str) -> Rate:
    """``"100/s"`` -> 100 per second, burst 100; ValueError names the expected form."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*([smh])\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"not a rate: {text!r} (use e.g. 100/s, 600/m, 5000/h)")
    count = float(match.group(1))
    return Rate(per_s=count / UNITS_S[match.group(2)], burst=max(1, math.floor(count)))


@dataclass
class _Bucket:
    tokens: float
    at: float


class SubmitLimiter:
    """Token buckets by caller name; safe from the server's worker threads."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, who: str, jobs: int = 1) -> None:
        """Spend ``jobs`` tokens of ``who``'s bucket or raise ``TooManyRequests``."""
        if jobs > self.rate.burst:
            raise Invalid(
                f"{jobs} jobs in one request exceed the submit limit's burst of "
                f"{self.rate.burst}; send them in smaller batches",
                field="jobs",
            )
        with self._lock:
            bucket = self._refilled(who)
            if bucket.tokens < jobs:
                wait_s = (jobs - bucket.tokens) / self.rate.per_s
                raise TooManyRequests(
                    f"submit rate limit of {self.rate.per_s:g} jobs/s (burst "
                    f"{self.rate.burst}) reached for {who}; retry in {math.ceil(wait_s)} s",
                    retry_after_s=wait_s,
                )
            bucket.tokens -= jobs

    def _refilled(self, who: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(who)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._forget_full(now)
            bucket = self._buckets[who] = _Bucket(tokens=float(self.rate.burst), at=now)
        gained = (now - bucket.at) * self.rate.per_s
        bucket.tokens = min(float(self.rate.burst), bucket.tokens + gained)
        bucket.at = now
        return bucket

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled: they hold no state worth keeping."""
        full_after_s = self.rate.burst / self.rate.per_s
        for name in [n for n, b in self._buckets.items() if now - b.at >= full_after_s]:
            del self._buckets[name]


def limiter_of(rate: str | None) -> SubmitLimiter | None:
    return SubmitLimiter(parse_rate(rate)) if rate else None
