"""What a policy decides in one cycle: placements, reasons to wait, preemptions."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from scheduler.domain.snapshot import GpuRef


class WaitReason(StrEnum):
    """Why a pending job did not start in this cycle (machine-readable)."""

    INSUFFICIENT_GPUS = "insufficient_gpus"  # not enough free GPUs now
    GPU_TYPE_UNAVAILABLE = "gpu_type_unavailable"  # no up node has GPUs of the asked type/memory
    NO_NODES = "no_nodes"  # no node is up
    BACKOFF = "backoff"  # waiting out the delay before a retry
    PRIORITY = "priority"  # a job ahead of it in order is waiting for the same GPUs
    WAITING_FOR_QUOTA = "waiting_for_quota"  # its queue holds its fair share already
    QUEUE_CAP = "queue_cap"  # its queue is at max_gpus
    RESERVED = "reserved_for_job"  # the free GPUs are reserved for a larger job ahead
    NODE_DRAINED = "node_drained"  # only drained nodes could hold it
    DEPENDENCY = "dependency"  # waits for another job


@dataclass(frozen=True)
class Placement:
    """Start ``job_id`` on these nodes (node rank = position) with exactly these GPUs.

    ``nodes`` is explicit because a job may ask for no GPU at all.
    """

    job_id: int
    nodes: tuple[str, ...]
    gpus: tuple[GpuRef, ...]


@dataclass(frozen=True, slots=True)  # 50,000 per cycle: slots halve their cost
class Wait:
    job_id: int
    reason: WaitReason
    message: str  # one human sentence, shown by `corral show`
    position: int | None = None  # 1 = next among the waiting jobs of its queue, in pass order
    estimated_start: float | None = None  # epoch seconds, when the policy can tell (reserved)


@dataclass(frozen=True)
class Preemption:
    attempt_id: int
    job_id: int
    message: str


@dataclass(frozen=True)
class Decisions:
    placements: tuple[Placement, ...] = ()
    waits: tuple[Wait, ...] = ()
    preemptions: tuple[Preemption, ...] = ()
