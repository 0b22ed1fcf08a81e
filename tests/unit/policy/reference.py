"""Brute-force references on plain node views: what the indexed pool must agree with.

These are the first, O(nodes)-per-query implementations of best fit, claiming and the
wait explanations (each node view copied on every claim). Slow and obviously right:
tests compare ``FreePool``, ``best_fit`` and ``explain_wait`` with them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from scheduler.domain.decisions import Placement, WaitReason
from scheduler.domain.snapshot import GpuRef, GpuView, NodeView, PendingJob, ResourceRequest
from scheduler.policy.explain import count, describe_request
from scheduler.policy.placement import gpu_matches, max_matching


def usable_gpus(request: ResourceRequest, node: NodeView) -> tuple[GpuView, ...]:
    """The node's free, healthy GPUs that match the request, lowest index first."""
    return tuple(
        sorted((g for g in node.free_gpus() if gpu_matches(request, g)), key=lambda g: g.index)
    )


def best_fit(job: PendingJob, nodes: Sequence[NodeView]) -> Placement | None:
    request = job.request
    if request.gpus == 0:
        up = sorted(
            (n for n in nodes if n.schedulable), key=lambda n: (bool(n.free_gpus()), n.name)
        )
        if len(up) < request.nodes:
            return None
        return Placement(job.job_id, tuple(n.name for n in up[: request.nodes]), ())
    if request.nodes > 1:
        candidates = sorted(
            ((len(n.gpus), n.name), n, usable_gpus(request, n))
            for n in nodes
            if n.schedulable and n.is_idle and len(usable_gpus(request, n)) >= request.gpus
        )[: request.nodes]
        if len(candidates) < request.nodes:
            return None
        gpus = tuple(
            GpuRef(n.name, g.index) for _, n, usable in candidates for g in usable[: request.gpus]
        )
        return Placement(job.job_id, tuple(n.name for _, n, _ in candidates), gpus)
    fits = [
        ((len(usable), len(n.gpus), n.name), n, usable)
        for n in nodes
        if n.schedulable and len(usable := usable_gpus(request, n)) >= request.gpus
    ]
    if not fits:
        return None
    _, node, usable = min(fits, key=lambda f: f[0])
    return Placement(
        job.job_id, (node.name,), tuple(GpuRef(node.name, g.index) for g in usable[: request.gpus])
    )


def claim(nodes: Sequence[NodeView], placement: Placement) -> tuple[NodeView, ...]:
    """A copy of ``nodes`` with the placement's GPUs allocated to its job (no checks)."""
    wanted = {(ref.node, ref.index) for ref in placement.gpus}
    return tuple(
        replace(
            n,
            gpus=tuple(
                replace(g, allocated_to=placement.job_id) if (n.name, g.index) in wanted else g
                for g in n.gpus
            ),
        )
        for n in nodes
    )


def explain(job: PendingJob, nodes: Sequence[NodeView]) -> tuple[WaitReason, str]:
    """The reason and sentence why ``job`` does not fit on ``nodes`` now."""
    request = job.request
    needs = f"needs {describe_request(request)}"
    up = [n for n in nodes if n.schedulable]
    if not up:
        if not nodes:
            return WaitReason.NO_NODES, f"{needs}; no node has registered"
        states = Counter(n.state.value for n in nodes)
        listed = ", ".join(f"{c} {s}" for s, c in sorted(states.items()))
        return WaitReason.NO_NODES, f"{needs}; no node is up ({listed})"
    if request.gpus == 0:
        verb = "is" if len(up) == 1 else "are"
        return WaitReason.NO_NODES, f"{needs}; only {count(len(up), 'node')} {verb} up"
    constrained = request.gpu_type is not None or request.gpu_memory_mib is not None
    kind = "matching healthy GPUs" if constrained else "healthy GPUs"
    if request.nodes > 1:
        holders = [n for n in up if max_matching(request, n, healthy_only=True) >= request.gpus]
        if len(holders) < request.nodes:
            has = "has" if len(holders) == 1 else "have"
            detail = f"only {count(len(holders), 'up node')} {has} {request.gpus} {kind}"
            return WaitReason.GPU_TYPE_UNAVAILABLE, f"{needs}; {detail}"
        idle = sum(1 for n in holders if n.is_idle and len(usable_gpus(request, n)) >= request.gpus)
        verb = "is" if idle == 1 else "are"
        detail = (
            f"it takes whole idle nodes and {idle} of the {len(holders)} up nodes "
            f"that could hold it {verb} idle"
        )
        return WaitReason.INSUFFICIENT_GPUS, f"{needs}; {detail}"
    capacity = max(max_matching(request, n, healthy_only=True) for n in up)
    if capacity < request.gpus:
        detail = f"no up node has {request.gpus} {kind} (the most on one node is {capacity})"
        return WaitReason.GPU_TYPE_UNAVAILABLE, f"{needs}; {detail}"
    most_free = max(len(usable_gpus(request, n)) for n in up)
    return WaitReason.INSUFFICIENT_GPUS, f"{needs}; the most free on one node is {most_free}"
