"""Rows to the API's views (``scheduler.domain.views``), with batched look-ups."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.domain.spec import masked_spec
from scheduler.domain.status import LIVE_ATTEMPT, JobStatus
from scheduler.domain.views import AttemptView, EventView, GpuInfo, GpuRefView, JobView, NodeInfo
from scheduler.store.attempts import gpu_seconds, work_at_risk_gpu_s
from scheduler.store.jobs import attempts_of, events_of
from scheduler.store.models import (
    AllocationRow,
    AttemptPartRow,
    AttemptRow,
    JobRow,
    NodeRow,
    utcnow,
)
from scheduler.store.snapshot import live_allocations, node_state


def _gpu_refs(session: Session, attempt_ids: list[int]) -> dict[int, list[GpuRefView]]:
    """attempt id -> the GPUs it was given (live or released), in node rank order."""
    refs: dict[int, list[GpuRefView]] = defaultdict(list)
    if not attempt_ids:
        return refs
    stmt = (
        select(AllocationRow, NodeRow.name)
        .join(NodeRow, NodeRow.id == AllocationRow.node_id)
        .where(AllocationRow.attempt_id.in_(attempt_ids))
        .order_by(AllocationRow.id)
    )
    for alloc, node in session.execute(stmt).all():
        refs[alloc.attempt_id].append(
            GpuRefView(node=node, index=alloc.gpu_index, uuid=alloc.gpu_uuid)
        )
    return refs


def _latest_attempts(session: Session, job_ids: list[int]) -> dict[int, AttemptRow]:
    if not job_ids:
        return {}
    stmt = select(AttemptRow).where(AttemptRow.job_id.in_(job_ids))
    latest: dict[int, AttemptRow] = {}
    for attempt in session.scalars(stmt).unique():
        if attempt.job_id not in latest or attempt.number > latest[attempt.job_id].number:
            latest[attempt.job_id] = attempt
    return latest


def _base(row: JobRow, attempt: AttemptRow | None, refs: list[GpuRefView]) -> JobView:
    live = attempt is not None and attempt.status in LIVE_ATTEMPT
    pending = row.status is JobStatus.PENDING
    return JobView(
        id=row.id,
        name=row.name,
        queue=row.queue.name,
        status=row.status.value,
        priority=row.priority,
        spec=masked_spec(row.spec),  # secret env values stay in the store
        submitted_at=row.submitted_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        attempts_count=row.attempts_count,
        retries_used=row.retries_used,
        exit_code=row.exit_code,
        termination_reason=row.termination_reason.value if row.termination_reason else None,
        wait_reason=row.wait_reason,
        wait_message=row.wait_message,
        wait_position=row.wait_position if pending else None,
        wait_estimated_start=row.wait_estimated_start if pending else None,
        nodes=[p.node.name for p in attempt.parts] if attempt else [],
        gpus=refs if live else [],
        idle_since=attempt.idle_since if live and attempt is not None else None,
        submitted_by=row.submitted_by,
        array_id=row.array_id,
        array_index=row.array_index,
    )


def job_views(session: Session, rows: list[JobRow]) -> list[JobView]:
    latest = _latest_attempts(session, [r.id for r in rows])
    refs = _gpu_refs(session, [a.id for a in latest.values()])
    return [
        _base(r, latest.get(r.id), refs.get(latest[r.id].id, []) if r.id in latest else [])
        for r in rows
    ]


def attempt_view(attempt: AttemptRow, refs: list[GpuRefView], now: datetime) -> AttemptView:
    return AttemptView(
        id=attempt.id,
        number=attempt.number,
        status=attempt.status.value,
        nodes=[p.node.name for p in attempt.parts],
        gpus=refs,
        created_at=attempt.created_at,
        started_at=attempt.started_at,
        ended_at=attempt.ended_at,
        reason=attempt.reason.value if attempt.reason else None,
        exit_code=attempt.exit_code,
        message=attempt.message,
        log_bytes=sum(p.log_bytes for p in attempt.parts),
        gpu_count=attempt.gpu_count,
        gpu_seconds=gpu_seconds(attempt, now),
        step=attempt.step,
        resumed_from_step=attempt.resumed_from_step,
        last_checkpoint_step=attempt.last_checkpoint_step,
        last_checkpoint_at=attempt.last_checkpoint_at,
        work_at_risk_gpu_s=work_at_risk_gpu_s(attempt, now),
        idle_since=attempt.idle_since,
    )


def job_detail(session: Session, row: JobRow, now: datetime | None = None) -> JobView:
    """The job with its whole history: every attempt (oldest first) and every event."""
    now = now or utcnow()
    attempts = attempts_of(session, row.id)
    refs = _gpu_refs(session, [a.id for a in attempts])
    view = _base(
        row, attempts[-1] if attempts else None, refs.get(attempts[-1].id, []) if attempts else []
    )
    view.attempts = [attempt_view(a, refs.get(a.id, []), now) for a in attempts]
    view.events = [
        EventView(
            at=e.at,
            kind=e.kind,
            old_status=e.old_status.value if e.old_status else None,
            new_status=e.new_status.value if e.new_status else None,
            message=e.message,
        )
        for e in events_of(session, row.id)
    ]
    return view


def node_infos(session: Session, nodes: list[NodeRow], *, detail: bool = False) -> list[NodeInfo]:
    held = live_allocations(session)
    out = []
    for node in nodes:
        gpus = [g for g in node.gpus if g.present]
        utils = [g.utilization_pct for g in gpus if g.utilization_pct is not None]
        allocated = sum(1 for g in gpus if (node.id, g.index) in held)
        info = NodeInfo(
            name=node.name,
            hostname=node.hostname,
            state=node_state(node).value,
            drain_reason=node.drain_reason,
            last_seen_at=node.last_seen_at,
            cpus=node.cpus,
            memory_total_mib=node.memory_total_mib,
            gpus_total=len(gpus),
            gpus_allocated=allocated,
            gpus_free=len(gpus) - allocated,
            gpu_types=sorted({g.gpu_type for g in gpus}),
            utilization_pct=sum(utils) / len(utils) if utils else None,
            gpu_memory_used_mib=_sum_known([g.memory_used_mib for g in gpus]),
            gpu_memory_total_mib=sum(g.memory_total_mib for g in gpus),
            gpus_unhealthy=sum(1 for g in gpus if not g.healthy),
            gpus_with_ecc_errors=sum(1 for g in gpus if g.ecc_errors),
            cpu_pct=node.cpu_pct,
            memory_used_mib=node.memory_used_mib,
        )
        if detail:
            info.gpus = [
                GpuInfo(
                    index=g.index,
                    uuid=g.uuid,
                    name=g.name,
                    gpu_type=g.gpu_type,
                    memory_total_mib=g.memory_total_mib,
                    healthy=g.healthy,
                    utilization_pct=g.utilization_pct,
                    memory_used_mib=g.memory_used_mib,
                    temperature_c=g.temperature_c,
                    power_w=g.power_w,
                    ecc_errors=g.ecc_errors,
                    job_id=held.get((node.id, g.index), (None, None))[0],
                    attempt_id=held.get((node.id, g.index), (None, None))[1],
                )
                for g in gpus
            ]
        out.append(info)
    return out


def _sum_known(values: list[int | None]) -> int | None:
    """The sum of the values reported; None when none was."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def part_for_log(session: Session, attempt: AttemptRow, rank: int = 0) -> AttemptPartRow | None:
    return next((p for p in attempt.parts if p.rank == rank), None)
