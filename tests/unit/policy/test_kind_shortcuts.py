"""The shortcuts by kind of job decide exactly as judging every job would.

A backlog has thousands of jobs of a few kinds (queue, request, preemptible, time
limit). The backfill pass (``_Backfill.walk``) takes the wait key of the last job of a
kind for the next ones while the pass's state holds, and skips admission for them with
an admission that judges by kind; reclaim (``_return_guarantees``) skips the jobs of a
kind that just changed nothing. Here both run against the plain versions, which judge
every job, on generated snapshots with long lines of few kinds, guarantees, borrowed
GPUs, reservations due and not; and on one hand-made case per way the shortcut could go
wrong (a state change that must end it).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from scheduler.domain.decisions import Decisions, WaitReason
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
from scheduler.policy import backfill as backfill_module
from scheduler.policy import preemption as preemption_module
from scheduler.policy.backfill import _Backfill
from scheduler.policy.context import Admission, by_kind
from scheduler.policy.explain import WaitList, backoff_wait
from scheduler.policy.registry import make_policy

NOW = 100_000.0
QUEUES = ("a", "b", "c")
SEEDS = range(150)


def _plain_walk(self: _Backfill, ordered: Sequence[PendingJob], admit: Admission) -> WaitList:
    """The walk that judges every job: admission, then ``outcome``."""
    waits = WaitList()
    for job in ordered:
        if job.not_before is not None and job.not_before > self.now:
            waits.add(job, backoff_wait(job, self.now))
            continue
        wait = admit(self.ctx, job)
        if wait is not None:
            waits.add(job, wait)
            continue
        key = self.outcome(job)
        if key is None:
            self.ctx.charge(job)
        else:
            waits.add(job, None, key)
    return waits


def _plain_guarantees(
    run: preemption_module._Run, decisions: Decisions, pending: dict[int, PendingJob]
) -> None:
    """Reclaim for every waiting job, in order, as if no kind had been seen before."""
    hopeless: set[str] = set()
    for wait in decisions.waits:
        if wait.reason not in preemption_module.RECLAIMABLE_WAITS:
            continue
        job = pending.get(wait.job_id)
        if job is None or job.queue in hopeless:
            continue
        if run.ledger.owed(job):
            booked = len(run.booked)
            run.reclaim_for(job)
            if len(run.booked) != booked:
                hopeless.clear()
        elif not run.ledger.may_owe(job.queue):
            hopeless.add(job.queue)


def _node(name: str, rng: random.Random, first_job: int) -> tuple[NodeView, list[RunningJob]]:
    size = rng.choice((4, 8, 8))
    busy = [i for i in range(size) if rng.random() < rng.choice((0.3, 0.8, 1.0))]
    owners: dict[int, int] = {}
    attempts: list[RunningJob] = []
    while busy:
        size = rng.choice((1, 2, 4))
        take, busy = busy[:size], busy[size:]
        job_id = first_job + len(attempts)
        owners.update(dict.fromkeys(take, job_id))
        attempts.append(
            RunningJob(
                job_id=job_id,
                attempt_id=job_id,
                queue=rng.choice(QUEUES),
                priority=0,
                gpus=tuple(GpuRef(name, i) for i in take),
                started_at=NOW - rng.choice((100, 5_000, 50_000)),
                preemptible=rng.random() < 0.8,
                time_limit_s=rng.choice((None, None, 600, 7_200)),
                stopping=rng.random() < 0.05,
            )
        )
    gpus = tuple(
        GpuView(i, f"GPU-{name}-{i}", "A100", 81_920, healthy=rng.random() > 0.05, allocated_to=o)
        for i in range(size)
        for o in (owners.get(i),)
    )
    return NodeView(name=name, state=NodeState.UP, gpus=gpus), attempts


def _kinds(rng: random.Random) -> list[tuple[str, ResourceRequest, bool, int | None]]:
    return [
        (
            rng.choice(QUEUES),
            ResourceRequest(rng.choice((1, 1, 2, 4, 8)), rng.choice((1, 1, 1, 2))),
            rng.random() < 0.8,
            rng.choice((None, None, 600, 3_600)),
        )
        for _ in range(rng.randint(2, 7))
    ]


def backlog_snapshot(seed: int) -> Snapshot:
    """Nodes mostly busy, queues with guarantees (some borrowing), 20-80 jobs of 2-7 kinds."""
    rng = random.Random(seed)
    nodes: list[NodeView] = []
    running: list[RunningJob] = []
    for i in range(rng.randint(2, 6)):
        view, attempts = _node(f"n{i}", rng, 1_000 + 50 * i)
        nodes.append(view)
        running.extend(attempts)
    capacity = sum(len(n.gpus) for n in nodes)
    queues = tuple(
        QueueView(
            name=name,
            weight=rng.choice((1.0, 2.0)),
            guaranteed_gpus=rng.randint(0, capacity // 2),
            max_gpus=rng.choice((None, None, None, capacity // 2)),
        )
        for name in QUEUES
    )
    kinds = _kinds(rng)
    pending = []
    for job_id in range(1, rng.randint(20, 80) + 1):
        queue, request, preemptible, limit = rng.choice(kinds)
        pending.append(
            PendingJob(
                job_id=job_id,
                queue=queue,
                priority=rng.choice((0, 0, 0, 1)),
                submitted_at=float(rng.randint(0, 1_000)),
                request=request,
                preemptible=preemptible,
                time_limit_s=limit,
                not_before=rng.choice((None,) * 9 + (NOW + 30,)),
            )
        )
    return Snapshot(NOW, tuple(nodes), tuple(pending), tuple(running), queues)


def _plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_Backfill, "walk", _plain_walk)
    monkeypatch.setattr(preemption_module, "_return_guarantees", _plain_guarantees)


POLICIES = (
    {"ordering": "fair_share", "preemption": "reclaim", "admission": "quota"},
    {"ordering": "fair_share", "preemption": "reclaim"},
    {"ordering": "priority_fifo", "preemption": "reclaim_las", "admission": "quota"},
)


@pytest.mark.parametrize("pieces", POLICIES, ids=lambda p: "+".join(p.values()))
def test_shortcuts_decide_as_every_job_judged(
    pieces: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = make_policy(**pieces)
    snapshots = [backlog_snapshot(seed) for seed in SEEDS]
    fast = [policy.decide(snap) for snap in snapshots]
    with monkeypatch.context() as patched:
        _plain(patched)
        plain = [policy.decide(snap) for snap in snapshots]
    for seed, got, want in zip(SEEDS, fast, plain, strict=True):
        assert got == want, f"seed {seed}"
    # the generator reaches what the shortcuts must get right
    assert sum(bool(d.preemptions) for d in plain) >= 10
    assert sum(any(w.reason is WaitReason.RESERVED for w in d.waits) for d in plain) >= 10
    if pieces.get("admission") == "quota":
        capped = sum(any(w.reason is WaitReason.QUEUE_CAP for w in d.waits) for d in plain)
        assert capped >= 10


def test_registered_admissions_judge_by_kind() -> None:
    policy = make_policy(admission="quota")
    assert by_kind(policy.admission)
    assert by_kind(make_policy(admission="none").admission)
    assert not by_kind(lambda ctx, job: None)


def _one_node(free: int, size: int = 8) -> NodeView:
    gpus = tuple(
        GpuView(i, f"GPU-n-{i}", "A100", 81_920, allocated_to=None if i < free else 900)
        for i in range(size)
    )
    return NodeView(name="n", state=NodeState.UP, gpus=gpus)


def test_a_reservation_of_its_queue_ends_the_shortcut_of_a_kind() -> None:
    """Job 1 (2 GPUs) fits and starts; job 2, same kind, finds 1 GPU and reserves;
    job 3, same kind again, now waits behind its queue's reservation. Had the pass kept
    job 1's outcome for the kind, job 2 would have been placed on GPUs that are not free
    (``take`` raises), and had it kept job 2's, job 3 would hold a reservation too."""
    running = RunningJob(900, 900, "q", 0, tuple(GpuRef("n", i) for i in range(3, 8)), 0.0)
    jobs = tuple(
        PendingJob(i, "q", 0, float(i), ResourceRequest(2), preemptible=False) for i in (1, 2, 3)
    )
    snap = Snapshot(NOW, (_one_node(free=3),), jobs, (running,), (QueueView("q"),))
    decisions = make_policy(ordering="fair_share").decide(snap)
    assert [p.job_id for p in decisions.placements] == [1]
    holder, behind = decisions.waits
    assert "holds a reservation" in holder.message
    assert "holds a reservation" not in behind.message


def test_a_booking_ends_the_shortcut_of_a_kind_in_reclaim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Queue ``g`` is owed 4 GPUs; ``x`` borrows all 8 with 1-GPU attempts. Jobs 1-5 of
    ``g`` (1 GPU each) wait; reclaim books jobs 1-4, one victim each: after each booking
    the next job of the kind is judged again (then ``g`` holds its guarantee: job 5 is
    not owed). Had the kind been skipped after job 1, only one attempt would stop."""
    attempts = tuple(RunningJob(900 + i, 900 + i, "x", 0, (GpuRef("n", i),), 0.0) for i in range(8))
    gpus = tuple(GpuView(i, f"GPU-n-{i}", "A100", 81_920, allocated_to=900 + i) for i in range(8))
    node = NodeView(name="n", state=NodeState.UP, gpus=gpus)
    jobs = tuple(PendingJob(i, "g", 0, float(i), ResourceRequest(1)) for i in range(1, 6))
    queues = (QueueView("g", guaranteed_gpus=4), QueueView("x", guaranteed_gpus=0))
    snap = Snapshot(NOW, (node,), jobs, attempts, queues)
    policy = make_policy(ordering="fair_share", preemption="reclaim", admission="quota")
    decisions = policy.decide(snap)
    assert len(decisions.preemptions) == 4
    with monkeypatch.context() as patched:
        _plain(patched)
        assert policy.decide(snap) == decisions


def test_kinds_differ_by_time_limit() -> None:
    """Two jobs alike but for the time limit: a reservation from 600 s lets the short one
    (ends by then) start on its GPUs, and keeps the long one, judged first, off them."""
    running = RunningJob(
        job_id=900,
        attempt_id=900,
        queue="q",
        priority=0,
        gpus=tuple(GpuRef("n", i) for i in range(2, 8)),
        started_at=NOW - 100,
        preemptible=False,
        time_limit_s=700,  # ends at NOW + 600
    )
    jobs = (
        PendingJob(1, "q", 0, 1.0, ResourceRequest(8), preemptible=False),
        PendingJob(2, "r", 0, 2.0, ResourceRequest(2), preemptible=False, time_limit_s=7_200),
        PendingJob(3, "r", 0, 3.0, ResourceRequest(2), preemptible=False, time_limit_s=300),
    )
    queues = (QueueView("q"), QueueView("r"))
    snap = Snapshot(NOW, (_one_node(free=2),), jobs, (running,), queues)
    decisions = make_policy(ordering="priority_fifo").decide(snap)
    assert [p.job_id for p in decisions.placements] == [3]
    assert sorted(w.job_id for w in decisions.waits) == [1, 2]


def test_module_walk_is_the_shortcut_one() -> None:
    """The patched tests above compare against a different walk (else they prove nothing)."""
    assert backfill_module._Backfill.walk is not _plain_walk


def test_reclaim_tells_kinds_apart_by_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """``g`` is owed 4 GPUs. Job 90 of ``r`` reserves the whole node from 600 s on; ``x``
    borrows GPUs 0-3. Jobs 1 and 2 of ``g`` ask alike, not preemptible, but job 1 has no
    time limit: it may not use the reserved GPUs, so no victim helps it. Job 2 ends in
    300 s, before the reservation: an attempt of ``x`` is stopped for it. Taken for one
    kind, job 2 would be skipped after job 1 found nothing."""
    attempts = (
        RunningJob(
            800,
            800,
            "r",
            0,
            tuple(GpuRef("n", i) for i in range(4, 8)),
            NOW - 100,
            preemptible=False,
            time_limit_s=700,
        ),
        RunningJob(801, 801, "x", 0, (GpuRef("n", 0), GpuRef("n", 1)), NOW - 5_000),
        RunningJob(802, 802, "x", 0, (GpuRef("n", 2), GpuRef("n", 3)), NOW - 5_000),
    )
    owners = {0: 801, 1: 801, 2: 802, 3: 802, 4: 800, 5: 800, 6: 800, 7: 800}
    gpus = tuple(GpuView(i, f"GPU-n-{i}", "A100", 81_920, allocated_to=owners[i]) for i in range(8))
    node = NodeView(name="n", state=NodeState.UP, gpus=gpus)
    jobs = (
        PendingJob(90, "r", 1, 0.0, ResourceRequest(8)),  # first: a higher priority
        PendingJob(1, "g", 0, 1.0, ResourceRequest(2), preemptible=False),
        PendingJob(2, "g", 0, 2.0, ResourceRequest(2), preemptible=False, time_limit_s=300),
    )
    queues = (
        QueueView("g", guaranteed_gpus=4),
        QueueView("r", guaranteed_gpus=4),
        QueueView("x"),
    )
    snap = Snapshot(NOW, (node,), jobs, attempts, queues)
    policy = make_policy(ordering="priority_fifo", preemption="reclaim", admission="quota")
    decisions = policy.decide(snap)
    assert [p.job_id for p in decisions.preemptions] == [801]
    assert "for job 2" in decisions.preemptions[0].message
    with monkeypatch.context() as patched:
        _plain(patched)
        assert policy.decide(snap) == decisions
