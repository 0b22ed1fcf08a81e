"""Gang placement: which GPUs a job gets, all of them at once or none.

Invariant: a placement names only GPUs that are free (unallocated and healthy) on
schedulable nodes of the node views it was given, of the asked type (case-insensitive)
and with at least the asked memory, exactly ``request.gpus`` of them on each of
``request.nodes`` distinct nodes; otherwise there is no placement (None). The decision
pass keeps a working copy of the node views and ``claim``s every placement from it, so
two placements of one cycle never share a GPU (``claim`` raises if one would).

Best fit, worked example. Free GPUs now: ``a`` 8 of 8, ``b`` 2 of 8 (indices 5, 7),
``c`` 3 of 4 (indices 0, 1, 2).

- 2 GPUs on 1 node: a, b and c fit; b has the fewest free -> ``b:5, b:7``.
- 3 GPUs on 1 node: a and c fit; c has the fewest free -> ``c:0, c:1, c:2``, and
  ``a`` stays whole for an 8-GPU job.
- 4 GPUs on each of 2 nodes: only whole idle nodes count (``a``); one is not enough ->
  None. With idle ``a`` (8 GPUs), ``d`` and ``e`` (4 GPUs each) it is ``d`` (rank 0),
  ``e`` (rank 1): the GPU counts closest to 4, so the big node stays free.
- no GPU: any up node, preferring one with no free GPU (useless to GPU jobs), then name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from scheduler.domain.decisions import Placement
from scheduler.domain.snapshot import GpuRef, GpuView, NodeView, PendingJob, ResourceRequest

Place = Callable[[PendingJob, Sequence[NodeView]], Placement | None]
"""A placement strategy: the GPUs for one job on these node views, or None."""


def gpu_matches(request: ResourceRequest, gpu: GpuView) -> bool:
    """Whether ``gpu`` has the asked type (case-insensitive) and memory, ignoring its state."""
    if request.gpu_type is not None and request.gpu_type.casefold() != gpu.gpu_type.casefold():
        return False
    return request.gpu_memory_mib is None or gpu.memory_mib >= request.gpu_memory_mib


def usable_gpus(request: ResourceRequest, node: NodeView) -> tuple[GpuView, ...]:
    """The node's free, healthy GPUs that match the request, lowest index first."""
    matching = (g for g in node.free_gpus() if gpu_matches(request, g))
    return tuple(sorted(matching, key=lambda g: g.index))


def best_fit(job: PendingJob, nodes: Sequence[NodeView]) -> Placement | None:
    """Gang best fit (see the module docstring); None when the job does not fit now."""
    request = job.request
    if request.gpus == 0:
        return _place_without_gpus(job, nodes)
    if request.nodes > 1:
        return _place_on_idle_nodes(job, nodes)
    return _place_on_one_node(job, nodes)


def _place_on_one_node(job: PendingJob, nodes: Sequence[NodeView]) -> Placement | None:
    request = job.request
    best: tuple[tuple[int, int, str], NodeView, tuple[GpuView, ...]] | None = None
    for node in nodes:
        if not node.schedulable:
            continue
        usable = usable_gpus(request, node)
        if len(usable) < request.gpus:
            continue
        key = (len(usable), len(node.gpus), node.name)
        if best is None or key < best[0]:
            best = (key, node, usable)
    if best is None:
        return None
    _, node, usable = best
    gpus = tuple(GpuRef(node.name, g.index) for g in usable[: request.gpus])
    return Placement(job_id=job.job_id, nodes=(node.name,), gpus=gpus)


def _place_on_idle_nodes(job: PendingJob, nodes: Sequence[NodeView]) -> Placement | None:
    request = job.request
    candidates: list[tuple[tuple[int, str], NodeView, tuple[GpuView, ...]]] = []
    for node in nodes:
        if not (node.schedulable and node.is_idle):
            continue
        usable = usable_gpus(request, node)
        if len(usable) >= request.gpus:
            candidates.append(((len(node.gpus), node.name), node, usable))
    if len(candidates) < request.nodes:
        return None
    chosen = sorted(candidates, key=lambda c: c[0])[: request.nodes]
    gpus = tuple(
        GpuRef(node.name, g.index) for _, node, usable in chosen for g in usable[: request.gpus]
    )
    return Placement(job_id=job.job_id, nodes=tuple(node.name for _, node, _ in chosen), gpus=gpus)


def _place_without_gpus(job: PendingJob, nodes: Sequence[NodeView]) -> Placement | None:
    up = sorted((n for n in nodes if n.schedulable), key=lambda n: (bool(n.free_gpus()), n.name))
    if len(up) < job.request.nodes:
        return None
    return Placement(
        job_id=job.job_id, nodes=tuple(n.name for n in up[: job.request.nodes]), gpus=()
    )


def can_ever_fit(request: ResourceRequest, nodes: Sequence[NodeView]) -> bool:
    """Could ``request`` fit on ``nodes`` if all of them were up, empty and healthy?

    The server rejects a job that no known node can ever hold. Health is ignored on
    purpose: a GPU that is unhealthy now may be repaired.
    """
    if request.gpus == 0:
        return len(nodes) >= request.nodes
    holders = sum(1 for n in nodes if max_matching(request, n) >= request.gpus)
    return holders >= request.nodes


def max_matching(request: ResourceRequest, node: NodeView, *, healthy_only: bool = False) -> int:
    """How many of the node's GPUs match the request, whatever their allocation."""
    return sum(1 for g in node.gpus if gpu_matches(request, g) and (g.healthy or not healthy_only))


def claim(nodes: Sequence[NodeView], placement: Placement) -> tuple[NodeView, ...]:
    """A copy of ``nodes`` with the placement's GPUs allocated to its job.

    Raises ValueError when the placement names a GPU twice, a GPU that is unknown,
    unhealthy or not free, or a node that is not schedulable: a bug in a placement.
    """
    wanted: dict[str, set[int]] = {}
    for ref in placement.gpus:
        indices = wanted.setdefault(ref.node, set())
        if ref.index in indices:
            raise ValueError(f"job {placement.job_id}: GPU {ref.node}:{ref.index} placed twice")
        indices.add(ref.index)
    claimed = tuple(
        _claim_on(node, wanted.pop(node.name, set()), placement.job_id) for node in nodes
    )
    if wanted:
        raise ValueError(f"job {placement.job_id}: no such node {sorted(wanted)}")
    return claimed


def _claim_on(node: NodeView, indices: set[int], job_id: int) -> NodeView:
    if not indices:
        return node
    if not node.schedulable:
        raise ValueError(f"job {job_id}: node {node.name} is {node.state.value}")
    free = {g.index for g in node.free_gpus()}
    if not indices <= free:
        raise ValueError(f"job {job_id}: GPUs {sorted(indices - free)} of {node.name} not free")
    gpus = tuple(replace(g, allocated_to=job_id) if g.index in indices else g for g in node.gpus)
    return replace(node, gpus=gpus)
