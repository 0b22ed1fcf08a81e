"""The submit token bucket, on an injected clock."""

from __future__ import annotations

import pytest

from scheduler.api.ratelimit import Rate, SubmitLimiter, parse_rate
from scheduler.domain.errors import Invalid, TooManyRequests


def test_parse_rate() -> None:
    assert parse_rate("100/s") == Rate(per_s=100.0, burst=100)
    assert parse_rate("600/m") == Rate(per_s=10.0, burst=600)
    for bad in ("100", "0/s", "10/d", "x/s"):
        with pytest.raises(ValueError, match="not a rate"):
            parse_rate(bad)


def test_a_bucket_refills_at_its_rate_and_is_per_caller() -> None:
    now = [0.0]
    limiter = SubmitLimiter(Rate(per_s=1.0, burst=2), clock=lambda: now[0])
    limiter.take("ann", 2)
    with pytest.raises(TooManyRequests) as refused:
        limiter.take("ann")
    assert refused.value.retry_after_s == pytest.approx(1.0)
    limiter.take("bob")  # another caller has its own bucket
    now[0] = 0.5
    with pytest.raises(TooManyRequests) as again:
        limiter.take("ann")
    assert again.value.retry_after_s == pytest.approx(0.5)
    now[0] = 1.0
    limiter.take("ann")
    now[0] = 100.0  # refills up to the burst only
    limiter.take("ann", 2)
    with pytest.raises(TooManyRequests):
        limiter.take("ann")


def test_more_jobs_than_the_burst_can_never_pass() -> None:
    limiter = SubmitLimiter(Rate(per_s=1.0, burst=2), clock=lambda: 0.0)
    with pytest.raises(Invalid, match="burst of 2"):
        limiter.take("ann", 3)
