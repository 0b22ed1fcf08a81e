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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Executable, String, bindparam, cast, func, select
from sqlalchemy.orm import Session, aliased, joinedload

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
from scheduler.store.models import (
    AllocationRow,
    AttemptPartRow,
    AttemptRow,
    GpuRow,
    JobRow,
    NodeRow,
    QueueRow,
)
from scheduler.store.nodes import NODE_UP, record_samples, upsert_node
from scheduler.store.transitions import record_event

LIVE_ATTEMPTS = (AttemptStatus.STARTING, AttemptStatus.RUNNING)


def apply_sync(
    session: Session, req: SyncRequest, now: datetime, retry: RetrySettings
) -> tuple[NodeRow, Effects]:
    node, came_back = upsert_node(session, req.node, now)
    effects = Effects(schedule=came_back)
    record_samples(session, node, req.host, req.gpu_samples, now)
    effects.merge(_apply_parts(session, node.id, req, now, retry))
    return node, effects


def _apply_parts(
    session: Session, node_id: int, req: SyncRequest, now: datetime, retry: RetrySettings
) -> Effects:
    """Apply the attempt reports, and end the live parts the agent no longer reports.

    The node's live parts are read as plain columns first; only the parts a report
    changes (or that end unreported) are loaded as rows: a busy node reports every
    attempt it runs, and most of them have nothing new."""
    effects = Effects()
    live = {part.attempt_id: part for part in live_part_rows(session, node_id)}
    reported = {r.attempt_id: r for r in req.attempts}
    changing = [i for i, report in reported.items() if _report_changes(live.get(i), report)]
    unreported = [i for i, part in live.items() if i not in reported and _ends_unreported(part)]
    parts = _parts_by_attempt(session, node_id, changing + unreported)
    for attempt_id in changing:
        part = parts.get(attempt_id)
        if part is not None:
            effects.merge(_apply_report(session, part, reported[attempt_id], now, retry))
    for attempt_id in unreported:
        part = parts[attempt_id]
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
    return effects


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


# a part's attempt, the attempt's parts and its job, loaded with the parts in one query
# instead of a few per part: a busy node's sync reads them all (an attempt has one part
# per node, so the join repeats little)
_WITH_ATTEMPT = (
    joinedload(AttemptPartRow.attempt).joinedload(AttemptRow.job),
    joinedload(AttemptPartRow.attempt).joinedload(AttemptRow.parts),
)


@dataclass(frozen=True)
class LivePart:
    """A live part on the node in plain columns: what its reply and the quick check read.

    Read with one query per sync instead of loading parts, attempts, jobs and nodes as
    ORM rows, which cost most of a sync's time."""

    attempt_id: int
    state: PartState
    rank: int
    log_bytes: int
    status: AttemptStatus
    stop_reason: TerminationReason | None
    number: int
    job_id: int
    job_name: str
    spec_digest: str
    array_id: int | None
    array_index: int | None
    queue: str
    head_host: str
    num_nodes: int
    step: int | None
    last_checkpoint_step: int | None
    resumed_from_step: int | None
    last_checkpoint_at: datetime | None
    held: str | None  # the GPU indices its attempt holds live on the node: "3,1"

    def gpu_indices(self) -> list[int]:
        """The GPU indices it holds on the node, in order."""
        return sorted(int(i) for i in self.held.split(",")) if self.held else []


def _live_part_rows_stmt() -> Executable:
    head, head_node, peer = aliased(AttemptPartRow), aliased(NodeRow), aliased(AttemptPartRow)
    part, attempt, job = AttemptPartRow, AttemptRow, JobRow
    num_nodes = (
        select(func.count(peer.id)).where(peer.attempt_id == part.attempt_id).scalar_subquery()
    )
    held = (  # in the same read: a statement less per sync (each is a round trip)
        select(func.aggregate_strings(cast(AllocationRow.gpu_index, String), ","))
        .where(
            AllocationRow.attempt_id == part.attempt_id,
            AllocationRow.node_id == part.node_id,
            AllocationRow.released_at.is_(None),
        )
        .scalar_subquery()
    )
    return (
        select(
            part.attempt_id,
            part.state,
            part.rank,
            part.log_bytes,
            attempt.status,
            attempt.stop_reason,
            attempt.number,
            job.id,
            job.name,
            job.spec_digest,
            job.array_id,
            job.array_index,
            QueueRow.name,
            head_node.hostname,
            num_nodes,
            attempt.step,
            attempt.last_checkpoint_step,
            attempt.resumed_from_step,
            attempt.last_checkpoint_at,
            held,
        )
        .join(attempt, attempt.id == part.attempt_id)
        .join(job, job.id == attempt.job_id)
        .join(QueueRow, QueueRow.id == job.queue_id)
        .join(head, (head.attempt_id == part.attempt_id) & (head.rank == 0))
        .join(head_node, head_node.id == head.node_id)
        .where(
            part.node_id == bindparam("node_id"),
            part.state.in_([PartState.PENDING, PartState.RUNNING]),
        )
        .order_by(part.attempt_id)
    )


# the hot path's statements are built once: building one costs more than running it
_LIVE_PART_ROWS = _live_part_rows_stmt()
# the node and its GPUs in one read (a GPU-less node: one row of NULL GPU columns)
_NODE_GPUS = (
    select(
        NodeRow.id,
        NodeRow.state,
        NodeRow.drained,
        NodeRow.hostname,
        NodeRow.cpus,
        NodeRow.memory_total_mib,
        NodeRow.agent_version,
        NodeRow.last_sample_at,
        GpuRow.id,
        GpuRow.index,
        GpuRow.uuid,
        GpuRow.name,
        GpuRow.gpu_type,
        GpuRow.memory_total_mib,
        GpuRow.present,
        GpuRow.healthy,
    )
    .outerjoin(GpuRow, GpuRow.node_id == NodeRow.id)
    .where(NodeRow.name == bindparam("name"))
)


def live_part_rows(session: Session, node_id: int) -> list[LivePart]:
    """The node's pending or running parts with their attempt, job, queue and head host."""
    return [LivePart(*row) for row in session.execute(_LIVE_PART_ROWS, {"node_id": node_id})]


_SPECS: dict[str, JobSpec] = {}  # spec digest -> the parsed spec (a job's spec never changes)
_SPECS_MAX = 4096


def _specs(session: Session, parts: list[LivePart]) -> dict[str, JobSpec]:
    """The parts' job specs by digest, parsed once per process and spec."""
    found = {p.spec_digest: _SPECS[p.spec_digest] for p in parts if p.spec_digest in _SPECS}
    missing = {p.job_id: p.spec_digest for p in parts if p.spec_digest not in found}
    if missing:
        if len(_SPECS) + len(missing) > _SPECS_MAX:
            _SPECS.clear()
        stmt = select(JobRow.id, JobRow.spec).where(JobRow.id.in_(list(missing)))
        for job_id, spec in session.execute(stmt):
            found[missing[job_id]] = _SPECS[missing[job_id]] = JobSpec.model_validate(spec)
    return found


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
    state = "drained" if node.drained else node.state
    return _reply(
        session,
        node.id,
        state,
        live_part_rows(session, node.id),
        req,
        checkpoints,
        interval_s,
        node_timeout_s,
    )


def _reply(
    session: Session,
    node_id: int,
    node_state: str,
    parts: list[LivePart],
    req: SyncRequest,
    checkpoints: Path,
    interval_s: float,
    node_timeout_s: float | None,
) -> SyncReply:
    run: list[AttemptLaunch] = []
    stop: list[AttemptStop] = []
    specs = _specs(session, parts)
    for part in parts:
        spec = specs[part.spec_digest]
        if part.status in LIVE_ATTEMPTS:
            run.append(_launch(part, spec, checkpoints, part.gpu_indices()))
        else:
            stop.append(_stop(part, spec))
    reported = [r.attempt_id for r in req.attempts]
    live_acks = {p.attempt_id: p.log_bytes for p in parts}
    if all(attempt_id in live_acks for attempt_id in reported):
        acks = {attempt_id: live_acks[attempt_id] for attempt_id in reported}
    else:
        acks = _log_acks(session, node_id, reported)
    return SyncReply(
        node_state=node_state,
        run=run,
        stop=stop,
        log_acks=acks,
        sync_interval_s=interval_s,
        node_timeout_s=node_timeout_s,
    )


def _stop(part: LivePart, spec: JobSpec) -> AttemptStop:
    """A preemption comes with the job's notice signal; a cancel or a timeout does not
    (the time limit's notice went out before the limit, from the agent itself)."""
    reason = part.stop_reason.value if part.stop_reason else "stop"
    notice = spec.signal if part.stop_reason is TerminationReason.PREEMPTED else None
    return AttemptStop(
        attempt_id=part.attempt_id,
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


def _launch(part: LivePart, spec: JobSpec, checkpoints: Path, indices: list[int]) -> AttemptLaunch:
    env = spec.job_env()  # the run instruction is the only place a secret value leaves
    env.update(
        {
            "CORRAL_JOB_ID": str(part.job_id),
            "CORRAL_JOB_NAME": part.job_name,
            "CORRAL_QUEUE": part.queue,
            "CORRAL_ATTEMPT": str(part.number),
            "CORRAL_CHECKPOINT_DIR": str(checkpoints / str(part.job_id)),
            "CORRAL_NODE_RANK": str(part.rank),
            "CORRAL_NUM_NODES": str(part.num_nodes),
            "CORRAL_HEAD_HOST": part.head_host,
            "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in indices),
        }
    )
    if part.array_id is not None:  # a job of an array: which one it is
        env["CORRAL_ARRAY_ID"] = str(part.array_id)
        env["CORRAL_ARRAY_INDEX"] = str(part.array_index)
    return AttemptLaunch(
        attempt_id=part.attempt_id,
        job_id=part.job_id,
        attempt_number=part.number,
        argv=spec.argv(),
        workdir=spec.workdir,
        env=env,
        gpu_indices=indices,
        grace_period_s=spec.grace_period_s,
        node_rank=part.rank,
        num_nodes=part.num_nodes,
        ray=spec.ray,
        time_limit_s=spec.time_limit_s,
        notice_signal=spec.signal.name if spec.signal else None,
        notice_s=spec.signal.notice_s if spec.signal else 0,
        cpus=spec.resources.cpus,
        memory_mib=spec.resources.memory_mib,
    )


@dataclass(frozen=True)
class QuickSync:
    """A sync of a node that is up with the facts it reports: its reply when the sync
    changes nothing but the node's liveness and readings, else None (``apply_reports``).
    A sync with reports to apply that may be answered before they are written
    (``may_answer_before_write``) has the reply as read, before them, in ``before``."""

    node_id: int
    gpu_ids: dict[int, int]  # GPU index -> GPU id, for the readings
    last_sample_at: datetime | None
    reply: SyncReply | None
    parts: tuple[LivePart, ...] = ()  # the node's live parts as read
    # with reports to apply: the reply as read, before they are written
    before: SyncReply | None = None

    def answers(self, req: SyncRequest, read: SyncRequest) -> bool:
        """Whether ``req`` would read as ``read`` (the sync this was read for) did while
        nothing changed in the database since: the same node facts, GPU health and
        reported attempts, nothing to apply. Then ``reply`` is its reply too."""
        return (
            self.reply is not None
            and req.node == read.node
            and _health(req) == _health(read)
            and [r.attempt_id for r in req.attempts] == [r.attempt_id for r in read.attempts]
            and _nothing_to_apply(list(self.parts), req.attempts)
        )

    def ahead(self, req: SyncRequest, read: SyncRequest) -> QuickSync | None:
        """What this read, made for ``read``, tells of ``req``, a later sync of the node
        with reports to apply, while nothing changed in the database since but what
        the agent's own reports wrote: the QuickSync to write them with, whose
        ``before`` is the reply as read. None when it cannot tell: other node facts or
        GPU health, log bytes, or reported attempts other than the parts it read.

        The attempts must be the same, as a set: a part ended by a report that another
        server wrote since this read is still reported by the agent until a reply
        unlists it, so it is in both; one that this read shows live and the agent no
        longer reports may have ended there, and the read would list it again."""
        if self.reply is None or req.node != read.node or _health(req) != _health(read):
            return None
        live = {part.attempt_id: part for part in self.parts}
        reported = {report.attempt_id for report in req.attempts}
        if reported != live.keys() or not may_answer_before_write(req):
            return None
        if _nothing_to_apply(list(self.parts), req.attempts):
            return None
        acks = {attempt_id: live[attempt_id].log_bytes for attempt_id in reported}
        before = self.reply.model_copy(update={"log_acks": acks})
        return replace(self, reply=None, before=before)


def quick_sync(
    session: Session,
    req: SyncRequest,
    checkpoints: Path,
    interval_s: float,
    node_timeout_s: float | None = None,
    answer_before_write: bool = False,
) -> QuickSync | None:
    """What a read tells of a sync: None when the node is new, lost or reports other facts
    (``apply_sync`` has it all to do), else a QuickSync, with the reply when nothing
    would change.

    Most syncs change nothing: the same attempts running, new samples. This reads the node,
    its GPUs and its live parts in a few plain queries (a read transaction: no row lock)
    and checks that the node is up with the same facts and GPU health, that every
    reported attempt is a running part with no new log bytes or progress, and that no
    unreported part would end. What is left to write (last seen, readings) is the
    caller's, and may be written later in a batch: it is telemetry, not job state.
    With ``answer_before_write``, a sync with reports to apply that may be answered
    before their write also gets the reply as read (``QuickSync.before``).
    """
    facts = req.node
    rows = session.execute(_NODE_GPUS, {"name": facts.name}).all()
    if not rows:
        return None
    node_id, state, drained, hostname, cpus, memory, version, last_sample_at = rows[0][:8]
    if state != NODE_UP:
        return None
    stored = (hostname, cpus, memory, version)
    if stored != (facts.hostname, facts.cpus, facts.memory_total_mib, facts.agent_version):
        return None
    gpu_ids = _same_gpus([row[8:] for row in rows if row[8] is not None], req)
    if gpu_ids is None:
        return None
    parts = live_part_rows(session, node_id)
    applies = not _nothing_to_apply(parts, req.attempts)
    if applies and not (answer_before_write and may_answer_before_write(req)):
        return QuickSync(node_id, gpu_ids, last_sample_at, None, tuple(parts))
    shown = "drained" if drained else state
    reply = _reply(session, node_id, shown, parts, req, checkpoints, interval_s, node_timeout_s)
    if applies:
        return QuickSync(node_id, gpu_ids, last_sample_at, None, tuple(parts), reply)
    return QuickSync(node_id, gpu_ids, last_sample_at, reply, tuple(parts))


def may_answer_before_write(req: SyncRequest) -> bool:
    """Whether a sync's reply may go out before its reports are written: they carry no
    log bytes. The agent keeps reporting every state it holds until the server's
    desired state stops listing the attempt, which only a committed end does, so a
    report lost with a server that dies before its write is sent again; log bytes
    are acknowledged by the reply itself, and are never acknowledged unwritten."""
    return not any(report.log_data for report in req.attempts)


def apply_reports(
    session: Session,
    req: SyncRequest,
    node_id: int,
    now: datetime,
    retry: RetrySettings,
    checkpoints: Path,
    interval_s: float,
    node_timeout_s: float | None = None,
    wants_reply: Callable[[], bool] = lambda: True,
) -> tuple[SyncReply | None, Effects] | None:
    """``apply_sync`` for a node ``quick_sync`` found up with the facts it reports: the
    attempt reports only, and the reply (None when ``wants_reply()`` says, once they
    are applied, that no one waits for it any more); None if the node was lost meanwhile.

    The node's row is locked ``FOR NO KEY UPDATE`` (syncs of one node take turns), which
    does not wait for a placement's insert that refers to the node, as ``upsert_node``'s
    lock does; last seen and readings are the caller's to write, as for a quick sync."""
    stmt = (
        select(NodeRow.state, NodeRow.drained)
        .where(NodeRow.id == node_id)
        .with_for_update(key_share=True)
    )
    node = session.execute(stmt).one_or_none()
    if node is None or node.state != NODE_UP:
        return None
    effects = _apply_parts(session, node_id, req, now, retry)
    if not wants_reply():
        return None, effects
    parts = live_part_rows(session, node_id)
    state = "drained" if node.drained else node.state
    reply = _reply(session, node_id, state, parts, req, checkpoints, interval_s, node_timeout_s)
    return reply, effects


def _same_gpus(rows: Sequence[Sequence[Any]], req: SyncRequest) -> dict[int, int] | None:
    """index -> GPU id when the node's present GPUs (``rows``: id, index, uuid, name,
    type, memory, present, healthy) are exactly the reported ones and each sample says
    the health already stored; else None (``upsert_node`` has work)."""
    present = {
        (index, uuid, name, kind, mib) for _, index, uuid, name, kind, mib, on, _ in rows if on
    }
    reported = {(g.index, g.uuid, g.name, g.gpu_type, g.memory_total_mib) for g in req.node.gpus}
    if present != reported:
        return None
    healthy = {index: ok for _, index, *_, ok in rows}
    if any(healthy.get(s.index, s.healthy) != s.healthy for s in req.gpu_samples):
        return None
    return {index: gpu_id for gpu_id, index, *_ in rows}


def _health(req: SyncRequest) -> dict[int, bool]:
    return {sample.index: sample.healthy for sample in req.gpu_samples}


def _nothing_to_apply(parts: list[LivePart], reports: list[AttemptReport]) -> bool:
    """Whether ``apply_sync`` would leave every part, attempt and job as it is."""
    live = {part.attempt_id: part for part in parts}
    if any(_report_changes(live.get(report.attempt_id), report) for report in reports):
        return False
    reported = {report.attempt_id for report in reports}
    return not any(_ends_unreported(p) for p in parts if p.attempt_id not in reported)


def _report_changes(part: LivePart | None, report: AttemptReport) -> bool:
    """Whether applying ``report`` would change its part, attempt or job.

    An attempt that is not live on the node (``part`` None) has ended there, or never
    ran there: only log bytes or progress can still change it. An agent reports an
    ended attempt until the server stops listing it, so most such reports change
    nothing."""
    if part is None:
        return bool(report.log_data) or report.progress is not None
    if part.state is not PartState.RUNNING:
        return True  # an end to record, a start to mark
    if report.state not in (AttemptState.RUNNING, AttemptState.STOPPING):
        return True
    return bool(report.log_data) or (
        report.progress is not None and _progress_moves(part, report.progress)
    )


def _ends_unreported(part: LivePart) -> bool:
    """Whether a live part the agent no longer reports ends: it was running (the agent
    lost its process) or its attempt was being stopped before it ever ran."""
    return part.state is PartState.RUNNING or part.status is AttemptStatus.STOPPING


def _progress_moves(part: LivePart, progress: ProgressReport) -> bool:
    """Whether ``record_progress`` would change the attempt."""
    for name in ("step", "last_checkpoint_step", "resumed_from_step"):
        value = getattr(progress, name)
        if value is not None and value != getattr(part, name):
            return True
    if progress.last_checkpoint_at is None:
        return False
    moment = datetime.fromtimestamp(progress.last_checkpoint_at, UTC)
    return part.last_checkpoint_at is None or moment > part.last_checkpoint_at


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
