"""What the HTTP API returns: typed views shared by the server and the Python client.

Times are timezone-aware UTC datetimes (ISO 8601 in JSON).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from scheduler.domain.spec import Text


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ErrorBody(_View):
    code: str = Field(description="machine-readable, e.g. invalid_request, not_found, job_finished")
    message: str = Field(description="one readable sentence")
    field: str | None = Field(default=None, description="dotted path of the offending field")


class ErrorResponse(_View):
    error: ErrorBody


class GpuRefView(_View):
    node: str
    index: int
    uuid: str | None = None


class AttemptView(_View):
    id: int
    number: int = Field(description="1 for the first attempt of a job, then 2, 3, ...")
    status: str
    nodes: list[str] = Field(default_factory=list)
    gpus: list[GpuRefView] = Field(default_factory=list)
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str | None = Field(default=None, description="TerminationReason once ended")
    exit_code: int | None = None
    message: str = ""
    log_bytes: int = 0
    gpu_count: int = 0
    gpu_seconds: float = Field(
        default=0.0, description="its GPUs times the time from start to end (or now)"
    )
    step: int | None = Field(default=None, description="the last step its progress file told")
    resumed_from_step: int | None = Field(
        default=None, description="the checkpoint it resumed from (step; 0: from scratch)"
    )
    last_checkpoint_step: int | None = None
    last_checkpoint_at: datetime | None = None
    work_at_risk_gpu_s: float | None = Field(
        default=None,
        description="while it runs: GPU-seconds since its last checkpoint (or its start), "
        "what a stop now would lose",
    )
    idle_since: datetime | None = Field(
        default=None,
        description="allocated but idle: its GPUs all stayed under the idle threshold since then",
    )


class EventView(_View):
    at: datetime
    kind: str
    old_status: str | None = None
    new_status: str | None = None
    message: str = ""


class JobView(_View):
    id: int
    name: str
    queue: str
    status: str
    priority: int
    spec: dict[str, Any]
    submitted_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    attempts_count: int = 0
    retries_used: int = 0
    exit_code: int | None = None
    termination_reason: str | None = None
    wait_reason: str | None = None
    wait_message: str | None = None
    wait_position: int | None = Field(
        default=None, description="while pending: 1 for the next of its queue to start, 2, ..."
    )
    wait_estimated_start: datetime | None = Field(
        default=None, description="while pending: when the policy expects it to start, if known"
    )
    nodes: list[str] = Field(default_factory=list, description="nodes of the live/last attempt")
    gpus: list[GpuRefView] = Field(default_factory=list, description="GPUs held now")
    idle_since: datetime | None = Field(
        default=None, description="its live attempt is allocated but idle since then"
    )
    submitted_by: str | None = Field(default=None, description="the submitting token's name")
    attempts: list[AttemptView] | None = Field(default=None, description="only from show")
    events: list[EventView] | None = Field(default=None, description="only from show")
    array_id: int | None = Field(default=None, description="its array: the first job's id")
    array_index: int | None = Field(default=None, description="its CORRAL_ARRAY_INDEX")


class JobList(_View):
    jobs: list[JobView]
    next_before_id: int | None = Field(
        default=None, description="pass as before_id for the next (older) page"
    )


class BatchResult(_View):
    """What a batch or array submit stored: the job ids in the order of the request."""

    job_ids: list[int]
    array_id: int | None = Field(default=None, description="set for an array")
    created: bool = Field(description="False: an earlier request with this key made them")


class LogChunk(_View):
    job_id: int
    attempt: int = Field(description="attempt number")
    offset: int
    next_offset: int
    data: str
    complete: bool = Field(description="the attempt ended and its whole log is here")


class TypeQuotaView(_View):
    gpu_type: str
    guaranteed_gpus: int = 0
    max_gpus: int | None = None


class QueueInfo(_View):
    """A queue and where it stands now. An org's counts are the sums of its children's."""

    name: str
    weight: float
    guaranteed_gpus: int
    borrow_limit_gpus: int | None = None
    max_gpus: int | None = None
    parent: str | None = Field(default=None, description="its org (one level of nesting)")
    type_quotas: list[TypeQuotaView] = Field(default_factory=list)
    pending: int = 0
    running: int = 0
    allocated_gpus: int = Field(default=0, description="GPUs its live attempts hold")
    fair_share_gpus: float = Field(
        default=0.0, description="its fair share now, as the scheduling policy computes it"
    )
    borrowed_gpus: int = Field(default=0, description="GPUs held above its guarantee")
    usage_gpu_hours: float = Field(
        default=0.0, description="GPU-hours used, decayed with the usage half-life"
    )
    idle_action: str = Field(
        default="none", description="none (flag idle attempts) or stop (stop them)"
    )


class QueueList(_View):
    queues: list[QueueInfo]


class GpuInfo(_View):
    index: int
    uuid: str
    name: str
    gpu_type: str
    memory_total_mib: int
    healthy: bool = True
    utilization_pct: float | None = None
    memory_used_mib: int | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    ecc_errors: int | None = None
    job_id: int | None = None
    attempt_id: int | None = None


class NodeInfo(_View):
    name: str
    hostname: str
    state: str = Field(description="up, drained or lost")
    drain_reason: str | None = None
    last_seen_at: datetime | None = None
    cpus: int
    memory_total_mib: int
    gpus_total: int
    gpus_allocated: int
    gpus_free: int
    gpu_types: list[str] = Field(default_factory=list)
    utilization_pct: float | None = Field(default=None, description="mean over its GPUs")
    gpu_memory_used_mib: int | None = Field(default=None, description="sum over its GPUs")
    gpu_memory_total_mib: int = 0
    gpus_unhealthy: int = Field(
        default=0, description="GPUs reported unhealthy (lost by the driver, or needing a reset)"
    )
    gpus_with_ecc_errors: int = Field(default=0, description="GPUs with uncorrected ECC errors")
    cpu_pct: float | None = None
    memory_used_mib: int | None = None
    gpus: list[GpuInfo] | None = Field(default=None, description="only from show")


class NodeList(_View):
    nodes: list[NodeInfo]


class UsageEntry(_View):
    """What one queue or user consumed in a window (GPU-hours clipped to the window)."""

    key: str = Field(description="the queue's name or the user's (token) name")
    gpu_hours_allocated: float = Field(description="GPU-hours its attempts held")
    gpu_hours_used: float = Field(
        description="allocated GPU-hours weighted by the GPUs' sampled utilisation"
    )
    gpu_hours_lost_to_preemption: float = Field(
        description="GPU-hours of preempted or node-lost attempts after their last checkpoint"
    )
    jobs_run: int = Field(description="jobs that held GPUs in the window")
    jobs_failed: int = Field(description="jobs that ended failed in the window")
    jobs_preempted: int = Field(description="jobs with an attempt preempted in the window")


class UsageReport(_View):
    by: str = Field(description="queue or user")
    since: datetime
    until: datetime
    entries: list[UsageEntry]


class DrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(default="drained by an operator", min_length=1, max_length=500)


class Health(_View):
    status: str
    version: str
    database: str
    role: str = Field(
        default="leader",
        description="leader (runs the scheduling cycle and loops) or follower (serves the "
        "API only; several servers on one PostgreSQL)",
    )


class TelemetryPoint(_View):
    """One GPU over ``[at, at + resolution_s)``; a raw sample has ``resolution_s`` 0."""

    at: datetime
    resolution_s: int = Field(description="0 for a raw sample, 60 or 3600 for an average")
    samples: int = Field(description="how many raw samples it stands for")
    utilization_pct: float | None = Field(default=None, description="mean over the bucket")
    utilization_max_pct: float | None = None
    memory_used_mib: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None


class GpuSeries(_View):
    node: str
    index: int
    uuid: str
    points: list[TelemetryPoint]


class JobTelemetry(_View):
    """The GPUs of one attempt of a job over a time range, at the finest resolution kept."""

    job_id: int
    attempt: int = Field(description="attempt number")
    start: datetime
    end: datetime
    resolution_s: int = Field(
        description="resolution of most points (0: raw samples); the newest stretch not "
        "yet rolled up comes finer"
    )
    gpus: list[GpuSeries]


class HistoryJob(_View):
    """A job that ended, as ``corral jobs --export`` writes it for ``corral simulate``."""

    id: int
    queue: str
    status: str
    priority: int
    submitted_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    gpus: int = Field(description="GPUs per node, as in its spec")
    nodes: int = 1
    gpu_type: str | None = None
    run_s: float | None = Field(default=None, description="seconds its attempts ran, summed")


class HistoryPage(_View):
    jobs: list[HistoryJob]
    next_after_id: int | None = Field(
        default=None, description="pass as after_id for the next page; null on the last"
    )
