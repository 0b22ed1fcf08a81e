"""Gang placement: which GPUs a job gets, all of them at once or none.

Invariant: a placement names only GPUs that are free in the pool it was given (healthy,
unallocated, on schedulable nodes), of the asked type (case-insensitive) and with at
least the asked memory, exactly ``request.gpus`` of them on each of ``request.nodes``
distinct nodes; otherwise there is no placement (None). The pass ``take``s every
placement from its pool, so two placements of one cycle never share a GPU (``take``
raises if one would). The pool answers the queries (``pool.FreePool``: O(GPUs per
node) for the tightest node), so a placement costs nothing like O(nodes).

Best fit, worked example. Free GPUs now: ``a`` 8 of 8, ``b`` 2 of 8 (indices 5, 7),
``c`` 3 of 4 (indices 0, 1, 2).

- 2 GPUs on 1 node: a, b and c fit; b has the fewest free -> ``b:5, b:7``.
- 3 GPUs on 1 node: a and c fit; c has the fewest free -> ``c:0, c:1, c:2``, and
  ``a`` stays whole for an 8-GPU job.
- 4 GPUs on each of 2 nodes: only whole idle nodes count (``a``); one is not enough ->
  None. With idle ``a`` (8 GPUs), ``d`` and ``e`` (4 GPUs each) it is ``d`` (rank 0),
  ``e`` (rank 1): the GPU counts closest to 4, so the big node stays free, and as few
  nodes as the request names.
- no GPU: any up node, preferring one with no free GPU (useless to GPU jobs), then name.
"""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.domain.decisions import Placement
from scheduler.domain.snapshot import GpuRef, GpuView, NodeView, PendingJob, ResourceRequest
from scheduler.policy.context import Pool


def gpu_matches(request: ResourceRequest, gpu: GpuView) -> bool:
    """Whether ``gpu`` has the asked type (case-insensitive) and memory, ignoring its state."""
    if request.gpu_type is not None and request.gpu_type.casefold() != gpu.gpu_type.casefold():
        return False
    return request.gpu_memory_mib is None or gpu.memory_mib >= request.gpu_memory_mib


def best_fit(job: PendingJob, pool: Pool) -> Placement | None:
    """Gang best fit on the pool (see the module docstring); None when it does not fit now."""
    request = job.request
    if request.gpus == 0:
        names = pool.gpuless_nodes(request.nodes)
        if len(names) < request.nodes:
            return None
        return Placement(job_id=job.job_id, nodes=tuple(names), gpus=())
    if request.nodes > 1:
        chosen = pool.idle_nodes(request, request.nodes)
        if len(chosen) < request.nodes:
            return None
    else:
        found = pool.tightest(request)
        if found is None:
            return None
        chosen = [found]
    gpus = tuple(GpuRef(name, index) for name, indices in chosen for index in indices)
    return Placement(job_id=job.job_id, nodes=tuple(name for name, _ in chosen), gpus=gpus)


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
