"""One agent sync, server side: apply the node's actual state, compute its desired state.

``apply_sync`` runs in one write transaction: node facts, samples, log chunks, the
jobs' progress (step, last checkpoint) and the attempt reports (running, exited).
``desired_state`` is read after it: every live part on the node whose attempt is
starting/running is in ``run`` (with the job's time limit and notice signal, which the
agent sends itself before the limit); those whose attempt is stopping are in ``stop``
(a preemption with the notice signal, a cancel or a time limit without). The reply also
carries the node timeout: an agent cut off from the server that long stops its
attempts, as the server then declares the node lost and frees their GPUs. A part the
agent reported running earlier but no longer reports was lost by the agent (it
restarted): it ends like a lost node.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from scheduler.domain.retry import RetrySettings
from scheduler.domain.spec import JobSpec
from scheduler.domain.status import AttemptStatus, PartState, TerminationReason
from scheduler.domain.sync import (
    AttemptLaunch,
    AttemptReport,
    AttemptState,
    AttemptStop,
    ProgressReport,
    SyncReply,
    SyncRequest,
)
from scheduler.store.attempts import (
    FINAL_PARTS,
    Effects,
    mark_running,
    part_exited,
    part_lost,
)
from scheduler.store.logs import append_log
from scheduler.store.models import AllocationRow, AttemptPartRow, AttemptRow, NodeRow
from scheduler.store.nodes import record_samples, upsert_node
from scheduler.store.transitions import record_event

LIVE_ATTEMPTS = (AttemptStatus.STARTING, AttemptStatus.RUNNING)


def apply_sync(
    session: Session, req: SyncRequest, now: datetime, retry: RetrySettings
) -> tuple[NodeRow, Effects]:
    node, came_back = upsert_node(session, req.node, now)
    effects = Effects(schedule=came_back)
    record_samples(session, node, req.host, req.gpu_samples, now)
    reported = {r.attempt_id: r for r in req.attempts}
    parts = _parts_by_attempt(session, node.id, list(reported))
    for attempt_id, report in reported.items():
        part = parts.get(attempt_id)
        if part is not None:
            effects.merge(_apply_report(session, part, report, now, retry))
    for part in _live_parts(session, node.id):
        if part.attempt_id in reported:
            continue
        if part.state is PartState.RUNNING:  # the agent forgot a running process
            effects.merge(part_lost(session, part, now, retry))
        elif part.attempt.status is AttemptStatus.STOPPING:  # stopped before it ever ran
            effects.merge(
                part_exited(
                    session,
                    part,
                    exit_code=None,
                    launch_failed=False,
                    stopped_by_agent=True,
                    message="stopped before it started",
                    now=now,
                    retry=retry,
                )
            )
    return node, effects


def _parts_by_attempt(
    session: Session, node_id: int, attempt_ids: list[int]
) -> dict[int, AttemptPartRow]:
    if not attempt_ids:
        return {}
    stmt = (
        select(AttemptPartRow)
        .where(AttemptPartRow.node_id == node_id, AttemptPartRow.attempt_id.in_(attempt_ids))
        .options(*_WITH_ATTEMPT)
    )
    return {p.attempt_id: p for p in session.scalars(stmt).unique()}


# a part's attempt, the attempt's parts and its job, loaded with the parts in a few
# queries instead of a few per part: a busy node's sync reads them all
_WITH_ATTEMPT = (
    joinedload(AttemptPartRow.attempt).joinedload(AttemptRow.job),
    joinedload(AttemptPartRow.attempt).selectinload(AttemptRow.parts),
)


def _live_parts(session: Session, node_id: int) -> list[AttemptPartRow]:
    """The node's parts that are pending or running (``live_parts_on_node``), loaded."""
    stmt = (
        select(AttemptPartRow)
        .where(
            AttemptPartRow.node_id == node_id,
            AttemptPartRow.state.in_([PartState.PENDING, PartState.RUNNING]),
        )
        .options(*_WITH_ATTEMPT)
    )
    return list(session.scalars(stmt).unique())


def _apply_report(
    session: Session,
    part: AttemptPartRow,
    report: AttemptReport,
    now: datetime,
    retry: RetrySettings,
) -> Effects:
    append_log(session, part, report.log_offset, report.log_data)
    if report.progress is not None:
        record_progress(part.attempt, report.progress)
    if part.state in FINAL_PARTS:
        return Effects()
    if report.state in (AttemptState.RUNNING, AttemptState.STOPPING):
        if part.state is PartState.PENDING:
            part.state = PartState.RUNNING
            part.pid = report.pid
            part.started_at = now
            mark_running(session, part.attempt, now)
        return Effects()
    launch_failed = report.state is AttemptState.LAUNCH_FAILED
    if launch_failed:
        record_event(session, part.attempt.job_id, "launch_failed", report.message, now)
    return part_exited(
        session,
        part,
        exit_code=report.exit_code,
        launch_failed=launch_failed,
        stopped_by_agent=report.stopped_by_agent,
        message=report.message,
        now=now,
        retry=retry,
    )


def record_progress(attempt: AttemptRow, progress: ProgressReport) -> None:
    """Keep what the job's progress file says; a field it leaves out keeps its value, and
    the last checkpoint never moves back (a stale copy read by another rank's agent)."""
    for name in ("step", "last_checkpoint_step", "resumed_from_step"):
        value = getattr(progress, name)
        if value is not None:
            setattr(attempt, name, value)
    if progress.last_checkpoint_at is not None:
        moment = datetime.fromtimestamp(progress.last_checkpoint_at, UTC)
        if attempt.last_checkpoint_at is None or moment > attempt.last_checkpoint_at:
            attempt.last_checkpoint_at = moment


def desired_state(
    session: Session,
    node: NodeRow,
    req: SyncRequest,
    checkpoints: Path,
    interval_s: float,
    node_timeout_s: float | None = None,
) -> SyncReply:
    run: list[AttemptLaunch] = []
    stop: list[AttemptStop] = []
    held = _held_gpus(session, node.id)
    for part in _live_parts(session, node.id):
        attempt = part.attempt
        spec = JobSpec.model_validate(attempt.job.spec)
        if attempt.status in LIVE_ATTEMPTS:
            run.append(_launch(part, spec, checkpoints, held.get(attempt.id, [])))
        else:
            stop.append(_stop(attempt, spec))
    acks = _log_acks(session, node.id, [r.attempt_id for r in req.attempts])
    state = "drained" if node.drained else node.state
    return SyncReply(
        node_state=state,
        run=run,
        stop=stop,
        log_acks=acks,
        sync_interval_s=interval_s,
        node_timeout_s=node_timeout_s,
    )


def _stop(attempt: AttemptRow, spec: JobSpec) -> AttemptStop:
    """A preemption comes with the job's notice signal; a cancel or a timeout does not
    (the time limit's notice went out before the limit, from the agent itself)."""
    reason = attempt.stop_reason.value if attempt.stop_reason else "stop"
    notice = spec.signal if attempt.stop_reason is TerminationReason.PREEMPTED else None
    return AttemptStop(
        attempt_id=attempt.id,
        reason=reason,
        grace_period_s=spec.grace_period_s,
        notice_signal=notice.name if notice else None,
        notice_s=notice.notice_s if notice else 0,
    )


def _log_acks(session: Session, node_id: int, attempt_ids: list[int]) -> dict[int, int]:
    """attempt id -> the log bytes the server holds of its part on the node."""
    if not attempt_ids:
        return {}
    stmt = select(AttemptPartRow.attempt_id, AttemptPartRow.log_bytes).where(
        AttemptPartRow.node_id == node_id, AttemptPartRow.attempt_id.in_(attempt_ids)
    )
    return {attempt_id: log_bytes for attempt_id, log_bytes in session.execute(stmt)}


def _held_gpus(session: Session, node_id: int) -> dict[int, list[int]]:
    """attempt id -> the GPU indices it holds live on the node, in order (one query)."""
    held: dict[int, list[int]] = {}
    stmt = (
        select(AllocationRow.attempt_id, AllocationRow.gpu_index)
        .where(AllocationRow.node_id == node_id, AllocationRow.released_at.is_(None))
        .order_by(AllocationRow.gpu_index)
    )
    for attempt_id, index in session.execute(stmt):
        held.setdefault(attempt_id, []).append(index)
    return held


def _launch(
    part: AttemptPartRow, spec: JobSpec, checkpoints: Path, indices: list[int]
) -> AttemptLaunch:
    attempt = part.attempt
    head = next(p for p in attempt.parts if p.rank == 0)
    env = spec.job_env()  # the run instruction is the only place a secret value leaves
    env.update(
        {
            "CORRAL_JOB_ID": str(attempt.job_id),
            "CORRAL_JOB_NAME": attempt.job.name,
            "CORRAL_QUEUE": attempt.job.queue.name,
            "CORRAL_ATTEMPT": str(attempt.number),
            "CORRAL_CHECKPOINT_DIR": str(checkpoints / str(attempt.job_id)),
            "CORRAL_NODE_RANK": str(part.rank),
            "CORRAL_NUM_NODES": str(len(attempt.parts)),
            "CORRAL_HEAD_HOST": head.node.hostname,
            "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in indices),
        }
    )
    if attempt.job.array_id is not None:  # a job of an array: which one it is
        env["CORRAL_ARRAY_ID"] = str(attempt.job.array_id)
        env["CORRAL_ARRAY_INDEX"] = str(attempt.job.array_index)
    return AttemptLaunch(
        attempt_id=attempt.id,
        job_id=attempt.job_id,
        attempt_number=attempt.number,
        argv=spec.argv(),
        workdir=spec.workdir,
        env=env,
        gpu_indices=indices,
        grace_period_s=spec.grace_period_s,
        node_rank=part.rank,
        num_nodes=len(attempt.parts),
        ray=spec.ray,
        time_limit_s=spec.time_limit_s,
        notice_signal=spec.signal.name if spec.signal else None,
        notice_s=spec.signal.notice_s if spec.signal else 0,
        cpus=spec.resources.cpus,
        memory_mib=spec.resources.memory_mib,
    )


def needs_action(req: SyncRequest, reply: SyncReply) -> bool:
    """Whether the agent has something to do now (else the reply may wait: long poll)."""
    held = {r.attempt_id: r.state for r in req.attempts}
    run_ids = {launch.attempt_id for launch in reply.run}
    stop_ids = {s.attempt_id for s in reply.stop}
    if any(attempt_id not in held for attempt_id in run_ids):
        return True
    if any(held.get(attempt_id) is AttemptState.RUNNING for attempt_id in stop_ids):
        return True
    alive = (AttemptState.RUNNING, AttemptState.STOPPING)
    return any(
        state in alive and attempt_id not in run_ids | stop_ids
        for attempt_id, state in held.items()
    )
