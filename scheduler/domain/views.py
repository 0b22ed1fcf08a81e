"""What the HTTP API returns: typed views shared by the server and the Python client.

Times are timezone-aware UTC datetimes (ISO 8601 in JSON).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
    attempts: list[AttemptView] | None = Field(default=None, description="only from show")
    events: list[EventView] | None = Field(default=None, description="only from show")


class JobList(_View):
    jobs: list[JobView]
    next_before_id: int | None = Field(
        default=None, description="pass as before_id for the next (older) page"
    )


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
    cpu_pct: float | None = None
    memory_used_mib: int | None = None
    gpus: list[GpuInfo] | None = Field(default=None, description="only from show")


class NodeList(_View):
    nodes: list[NodeInfo]


class DrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="drained by an operator", min_length=1, max_length=500)


class Health(_View):
    status: str
    version: str
    database: str
