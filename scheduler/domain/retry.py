"""Retry backoff after a failed attempt: 10 s, then doubled each time, capped."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetrySettings:
    backoff_base_s: float = 10.0  # first retry after this, then doubled each time
    backoff_max_s: float = 600.0

    def delay_s(self, retries_used: int) -> float:
        """Delay before retry number ``retries_used + 1``: 10, 20, 40, ... capped."""
        return float(min(self.backoff_max_s, self.backoff_base_s * (2**retries_used)))
