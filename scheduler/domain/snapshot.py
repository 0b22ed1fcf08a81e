"""A frozen picture of the cluster that a policy decides on.

The store builds it in one read transaction; policies only read it. Times are
seconds since the epoch (``now`` is the snapshot's clock: policies never read one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler.domain.status import NodeState


@dataclass(frozen=True, order=True)
class GpuRef:
    """One GPU, by node name and device index on that node."""

    node: str
    index: int


@dataclass(frozen=True)
class GpuView:
    index: int
    uuid: str
    gpu_type: str  # a short product name, e.g. "A100-80GB"
    memory_mib: int
    healthy: bool = True
    allocated_to: int | None = None  # job id holding it, None when free


@dataclass(frozen=True)
class NodeView:
    name: str
    state: NodeState
    gpus: tuple[GpuView, ...]

    @property
    def schedulable(self) -> bool:
        return self.state is NodeState.UP

    def free_gpus(self) -> tuple[GpuView, ...]:
        return tuple(g for g in self.gpus if g.allocated_to is None and g.healthy)

    @property
    def is_idle(self) -> bool:
        return all(g.allocated_to is None for g in self.gpus)


@dataclass(frozen=True)
class ResourceRequest:
    """``gpus`` on each of ``nodes`` nodes, all at once (a gang)."""

    gpus: int
    nodes: int = 1
    gpu_type: str | None = None
    gpu_memory_mib: int | None = None

    @property
    def total_gpus(self) -> int:
        return self.gpus * self.nodes


@dataclass(frozen=True)
class PendingJob:
    job_id: int
    queue: str
    priority: int
    submitted_at: float  # original submit time: a requeued job keeps its place
    request: ResourceRequest
    preemptible: bool = True
    time_limit_s: int | None = None
    not_before: float | None = None  # backoff after a failure: not placed before this
    attained_gpu_s: float = 0.0  # GPU-seconds of service received so far


@dataclass(frozen=True)
class RunningJob:
    job_id: int
    attempt_id: int
    queue: str
    priority: int
    gpus: tuple[GpuRef, ...]
    started_at: float
    preemptible: bool = True
    time_limit_s: int | None = None
    last_checkpoint_at: float | None = None  # last checkpoint the job reported, if any
    attained_gpu_s: float = 0.0  # GPU-seconds of service before this attempt
    stopping: bool = False  # a stop was already asked; its GPUs free up soon

    @property
    def ends_by(self) -> float | None:
        """When its time limit stops it at the latest (None: no limit)."""
        return None if self.time_limit_s is None else self.started_at + self.time_limit_s


@dataclass(frozen=True)
class TypeQuota:
    """A queue's guarantee and cap for one GPU type (on top of its totals)."""

    gpu_type: str
    guaranteed_gpus: int = 0
    max_gpus: int | None = None


@dataclass(frozen=True)
class QueueView:
    """A fair-share unit. ``parent`` names its org (one level of nesting) or is None.

    An org's own fields bound its children together: its guarantee is shared among
    them, its cap caps their sum. Jobs are submitted to leaf queues.
    """

    name: str
    weight: float = 1.0
    guaranteed_gpus: int = 0
    borrow_limit_gpus: int | None = None
    max_gpus: int | None = None
    parent: str | None = None
    usage_gpu_s: float = 0.0  # GPU-seconds used, decayed with the usage half-life
    type_quotas: tuple[TypeQuota, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    now: float
    nodes: tuple[NodeView, ...] = ()
    pending: tuple[PendingJob, ...] = ()
    running: tuple[RunningJob, ...] = ()
    queues: tuple[QueueView, ...] = field(default_factory=tuple)

    def node(self, name: str) -> NodeView:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)
