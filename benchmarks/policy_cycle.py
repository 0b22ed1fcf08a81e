"""Cycle latency of the scheduling policy at data-center scale: ``decide(snapshot)``.

Builds a seeded, realistic snapshot (mixed GPU types, ~90% of GPUs held by running
attempts with and without time limits, weighted queues with guarantees, a pending
backlog of 1/2/4/8-GPU and multi-node jobs, some with type or memory constraints,
some in backoff), times ``decide`` with ``time.perf_counter`` and measures its peak
memory with ``tracemalloc`` (a separate run: tracing slows Python down), for every
policy asked and at several backlog sizes, to show that memory grows linearly.

    python benchmarks/policy_cycle.py                 # backfill and greedy, 10k/25k/50k
    python benchmarks/policy_cycle.py --policy fair_share//reclaim/backfill/quota
    python benchmarks/policy_cycle.py --policy las --policy greedy --scaling ""
    python benchmarks/policy_cycle.py --list          # the registered pieces

A policy is ``ORDERING/PLACEMENT/PREEMPTION/BACKFILL/ADMISSION`` as ``Policy.name``
prints it; an empty or missing part takes ``make_policy``'s default, and a single name
sets the one piece that has it. Times are wall-clock (``perf_counter``), with the CPU
time beside them: on a machine that others share, the CPU time is the policy's own.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clean checkout

from scheduler.domain.snapshot import (
    GpuRef,
    GpuView,
    NodeView,
    PendingJob,
    QueueView,
    ResourceRequest,
    RunningJob,
    Snapshot,
)
from scheduler.domain.status import NodeState
from scheduler.policy import registry
from scheduler.policy.decide import Policy

NOW = 1_750_000_000.0
GPU_KINDS = (("A100-80GB", 81_920), ("H100", 81_920), ("A100-40GB", 40_960), ("L40S", 46_068))
KIND_WEIGHTS = (5, 3, 1, 1)
LIMITS_S = (1_800, 3_600, 4 * 3_600, 12 * 3_600, 24 * 3_600, 72 * 3_600)
DEFAULT_POLICIES = (
    "priority_fifo/best_fit/none/backfill/none",
    "priority_fifo/best_fit/none/greedy/none",
)


def build_nodes(rng: random.Random, count: int, gpus_per_node: int) -> list[NodeView]:
    """Nodes of one GPU kind each (a few mixed ones), ~1% not up, ~0.5% GPUs unhealthy."""
    nodes = []
    for n in range(count):
        kind = rng.choices(GPU_KINDS, KIND_WEIGHTS)[0]
        other = rng.choices(GPU_KINDS, KIND_WEIGHTS)[0] if rng.random() < 0.02 else kind
        gpus = tuple(
            GpuView(
                index=i,
                uuid=f"GPU-{n:05d}-{i}",
                gpu_type=(kind if i < gpus_per_node // 2 else other)[0],
                memory_mib=(kind if i < gpus_per_node // 2 else other)[1],
                healthy=rng.random() > 0.005,
            )
            for i in range(gpus_per_node)
        )
        state = rng.choices((NodeState.UP, NodeState.DRAINED, NodeState.LOST), (98, 1, 1))[0]
        nodes.append(NodeView(name=f"node-{n:05d}", state=state, gpus=gpus))
    return nodes


def fill(
    rng: random.Random, nodes: list[NodeView], queues: Sequence[QueueView], busy: float
) -> tuple[list[NodeView], list[RunningJob]]:
    """Running attempts on ~``busy`` of the GPUs; the node views marked accordingly."""
    running: list[RunningJob] = []
    held: dict[tuple[str, int], int] = {}
    job_id = 10_000_000
    for node in nodes:
        free = [g.index for g in node.gpus if g.healthy]
        target = sum(1 for _ in free if rng.random() < busy)
        while target > 0 and free:
            size = min(rng.choice((1, 1, 2, 2, 4, 8)), target, len(free))
            job_id += 1
            taken, free = free[:size], free[size:]
            target -= size
            for index in taken:
                held[node.name, index] = job_id
            running.append(_running(rng, job_id, node.name, taken, queues))
    marked = [
        NodeView(
            node.name,
            node.state,
            tuple(
                GpuView(
                    g.index,
                    g.uuid,
                    g.gpu_type,
                    g.memory_mib,
                    g.healthy,
                    held.get((node.name, g.index)),
                )
                for g in node.gpus
            ),
        )
        for node in nodes
    ]
    return marked, running


def _running(
    rng: random.Random, job_id: int, node: str, indices: list[int], queues: Sequence[QueueView]
) -> RunningJob:
    return RunningJob(
        job_id=job_id,
        attempt_id=job_id,
        queue=rng.choice(queues).name,
        priority=0,
        gpus=tuple(GpuRef(node, i) for i in indices),
        started_at=NOW - rng.uniform(0, 86_400),
        preemptible=rng.random() < 0.7,
        time_limit_s=rng.choice(LIMITS_S) if rng.random() < 0.6 else None,
        last_checkpoint_at=NOW - rng.uniform(0, 3_600) if rng.random() < 0.5 else None,
        attained_gpu_s=rng.uniform(0, 1e6),
        stopping=rng.random() < 0.01,
    )


def build_queues(count: int, capacity: int) -> list[QueueView]:
    """Weighted queues; half have a guarantee (together ~half the cluster), a few caps."""
    queues = []
    for q in range(count):
        guaranteed = capacity // count if q % 2 == 0 else 0
        queues.append(
            QueueView(
                name=f"team-{q:02d}",
                weight=float(1 + q % 4),
                guaranteed_gpus=guaranteed,
                borrow_limit_gpus=capacity // 4 if q % 5 == 1 else None,
                max_gpus=capacity // 3 if q % 7 == 3 else None,
                usage_gpu_s=float(q * 3_600 * 100),
            )
        )
    return queues


def build_pending(rng: random.Random, count: int, queues: Sequence[QueueView]) -> list[PendingJob]:
    weights = [1 + (i % 5) for i in range(len(queues))]  # some queues much busier
    jobs = []
    for job_id in range(1, count + 1):
        multi = rng.random() < 0.04
        kind = rng.choices(GPU_KINDS, KIND_WEIGHTS)[0]
        request = ResourceRequest(
            gpus=8 if multi else rng.choice((1, 1, 1, 2, 2, 4, 8)),
            nodes=rng.choice((2, 2, 4)) if multi else 1,
            gpu_type=rng.choice((kind[0], kind[0].lower())) if rng.random() < 0.2 else None,
            gpu_memory_mib=81_920 if rng.random() < 0.05 else None,
        )
        jobs.append(
            PendingJob(
                job_id=job_id,
                queue=rng.choices(queues, weights)[0].name,
                priority=rng.choice((0, 0, 0, 0, 1, -1)),
                submitted_at=NOW - rng.uniform(0, 7 * 86_400),
                request=request,
                preemptible=rng.random() < 0.7,
                time_limit_s=rng.choice(LIMITS_S) if rng.random() < 0.6 else None,
                not_before=NOW + rng.uniform(1, 600) if rng.random() < 0.03 else None,
                attained_gpu_s=rng.uniform(0, 50_000) if rng.random() < 0.3 else 0.0,
            )
        )
    return jobs


def build_snapshot(args: argparse.Namespace, pending: int) -> Snapshot:
    rng = random.Random(args.seed)
    nodes = build_nodes(rng, args.nodes, args.gpus_per_node)
    queues = build_queues(args.queues, args.nodes * args.gpus_per_node)
    nodes, running = fill(rng, nodes, queues, args.busy)
    jobs = build_pending(random.Random(args.seed + 1), pending, queues)
    return Snapshot(
        now=NOW,
        nodes=tuple(nodes),
        pending=tuple(jobs),
        running=tuple(running),
        queues=tuple(queues),
    )


PIECES = {
    "ordering": registry.ORDERINGS,
    "placement": registry.PLACEMENTS,
    "preemption": registry.PREEMPTIONS,
    "backfill": registry.BACKFILLS,
    "admission": registry.ADMISSIONS,
}


def policy_of(spec: str) -> Policy:
    """``fair_share//reclaim/backfill/quota`` -> that policy; a single name (``las``,
    ``greedy``, ``quota``) sets the one piece whose registry has it."""
    parts = spec.split("/")
    if len(parts) > len(PIECES):
        raise SystemExit(f"a policy has at most {len(PIECES)} parts: {spec!r}")
    names: dict[str, Any] = {k: v for k, v in zip(PIECES, parts, strict=False) if v}
    if len(parts) == 1:
        kinds = [kind for kind, known in PIECES.items() if spec in known]
        names = {kinds[0]: spec} if len(kinds) == 1 else names
    try:
        return registry.make_policy(**names)
    except ValueError as error:
        raise SystemExit(str(error)) from None


def measure(
    policy: Policy, snapshot: Snapshot, repeat: int
) -> tuple[list[float], list[float], int, int, int]:
    """(wall seconds per decide, CPU seconds per decide, peak traced bytes, placements,
    waits). CPU time tells the policy's own cost apart on a machine that others share."""
    decisions = policy.decide(snapshot)  # warm-up (and the counts)
    times, cpu = [], []
    for _ in range(repeat):
        gc.collect()
        started, started_cpu = time.perf_counter(), time.process_time()
        kept = policy.decide(snapshot)  # kept: freeing 50,000 waits is not the policy's time
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        del kept
    gc.collect()
    tracemalloc.start()
    policy.decide(snapshot)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return times, cpu, peak, len(decisions.placements), len(decisions.waits)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--queues", type=int, default=20)
    parser.add_argument("--pending", type=int, default=50_000)
    parser.add_argument("--scaling", default="10000,25000", help="smaller backlogs to compare")
    parser.add_argument("--busy", type=float, default=0.9, help="share of GPUs held")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policy", action="append", help="ORDERING/PLACEMENT/...; repeatable")
    parser.add_argument("--list", action="store_true", help="print the registered pieces")
    args = parser.parse_args(argv)
    if args.list:
        for kind, known in PIECES.items():
            print(f"{kind:11} {', '.join(known)}")
        return
    policies = [policy_of(spec) for spec in args.policy or DEFAULT_POLICIES]
    sizes = sorted({int(s) for s in args.scaling.split(",") if s} | {args.pending})
    print(
        f"{args.nodes} nodes x {args.gpus_per_node} GPUs, {args.queues} queues, "
        f"{args.busy:.0%} busy, seed {args.seed}, {args.repeat} repeats"
    )
    peaks: dict[str, dict[int, int]] = {policy.name: {} for policy in policies}
    for size in sizes:
        snapshot = build_snapshot(args, size)
        print(f"\n{size} pending, {len(snapshot.running)} running attempts")
        for policy in policies:
            times, cpu, peak, placed, waiting = measure(policy, snapshot, args.repeat)
            peaks[policy.name][size] = peak
            ms = [t * 1e3 for t in times]
            print(
                f"  {policy.name:44} median {statistics.median(ms):6.1f} ms  "
                f"min {min(ms):6.1f}  max {max(ms):6.1f}  (CPU median "
                f"{statistics.median(cpu) * 1e3:6.1f})  peak {peak / 2**20:5.1f} MiB "
                f"({peak / size:4.0f} B/job)  placed {placed}, waiting {waiting}"
            )
    if len(sizes) > 1:
        print(f"\nmemory per pending job, from {sizes[0]} to {sizes[-1]} pending:")
        for name, by_size in peaks.items():
            slope = (by_size[sizes[-1]] - by_size[sizes[0]]) / (sizes[-1] - sizes[0])
            print(f"  {name:44} {slope:4.0f} B/job")


if __name__ == "__main__":
    main()
