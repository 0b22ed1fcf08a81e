"""Settings of a corral server, in one frozen place (flags and env fill it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scheduler.domain.retry import RetrySettings
from scheduler.policy.context import PolicyParams

__all__ = ["PolicyParams", "RetrySettings", "ServerSettings"]


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8470
    workers: int = 1  # server processes on the socket (PostgreSQL only: api/workers.py)
    node_timeout_s: float = 90.0  # a node that has not synced for this long is lost
    long_poll_s: float = 20.0  # longest an agent sync is held open
    # PostgreSQL: longest a sync's reply waits for its reports' write before it answers
    # with the desired state as read, the write going on behind it (None: until written,
    # as SQLite's group commit does; `corral server --report-wait-s`: 0, no wait)
    report_wait_s: float | None = None
    cycle_interval_s: float = 5.0  # the periodic scheduling pass (events wake it sooner)
    liveness_interval_s: float = 2.0
    agent_sync_interval_s: float = 2.0
    checkpoint_root: Path | None = None  # shared storage; DATA_DIR/checkpoints if unset
    usage_interval_s: float = 30.0  # how often the queues' decayed usage is brought up to date
    metrics_public: bool = False  # GET /metrics without a token (for a Prometheus scraper)
    submit_rate: str | None = None  # jobs per user, e.g. "100/s" (api/ratelimit.py); None: off
    tls_cert: Path | None = None  # with tls_key: serve https
    tls_key: Path | None = None
    idle_util_pct: float = 5.0  # an attempt whose GPUs all stay under this ...
    idle_window_s: float = 1800.0  # ... for this long is flagged idle (loops/idle.py)
    idle_interval_s: float = 60.0
    # telemetry history: raw samples, then 1-minute, then 1-hour averages (store/telemetry.py)
    keep_samples_s: float = 6 * 3600.0
    keep_minute_rollups_s: float = 7 * 86400.0
    keep_hour_rollups_s: float = 400 * 86400.0
    rollup_interval_s: float = 60.0  # how often closed buckets are rolled up
    # the policy's pieces, by registry name (scheduler/policy/registry.py)
    ordering: str = "fair_share"  # queues by deficit to their fair share
    placement: str = "best_fit"
    preemption: str = "reclaim"  # return guarantees from borrowed GPUs
    backfill: str = "backfill"  # EASY backfill with reservations
    admission: str = "quota"  # caps and borrow limits
    params: PolicyParams = field(default_factory=PolicyParams)  # usage half-life, min runtime
    retry: RetrySettings = field(default_factory=RetrySettings)

    @property
    def checkpoints(self) -> Path:
        return self.checkpoint_root or self.data_dir / "checkpoints"
