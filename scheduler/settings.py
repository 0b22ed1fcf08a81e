"""Settings of a corral server, in one frozen place (flags and env fill it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RetrySettings:
    backoff_base_s: float = 10.0  # first retry after this, then doubled each time
    backoff_max_s: float = 600.0

    def delay_s(self, retries_used: int) -> float:
        """Delay before retry number ``retries_used + 1``: 10, 20, 40, ... capped."""
        return float(min(self.backoff_max_s, self.backoff_base_s * (2**retries_used)))


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8470
    node_timeout_s: float = 30.0  # a node that has not synced for this long is lost
    long_poll_s: float = 20.0  # longest an agent sync is held open
    cycle_interval_s: float = 5.0  # the periodic scheduling pass (events wake it sooner)
    liveness_interval_s: float = 2.0
    agent_sync_interval_s: float = 2.0
    checkpoint_root: Path | None = None  # shared storage; DATA_DIR/checkpoints if unset
    ordering: str = "priority_fifo"
    placement: str = "best_fit"
    preemption: str = "none"
    retry: RetrySettings = field(default_factory=RetrySettings)

    @property
    def checkpoints(self) -> Path:
        return self.checkpoint_root or self.data_dir / "checkpoints"
