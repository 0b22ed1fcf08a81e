"""Telemetry history: raw samples downsampled to 1-minute and 1-hour buckets, pruned by age;
and the agents' readings written in batches (``write_readings``).

Owns ``gpu_rollups`` and ``host_rollups``. Three levels, each kept for its own window
(``Retention``): raw samples (default 6 h), 1-minute averages built from the raw samples
(7 d), 1-hour averages built from the 1-minute ones (400 d). So the tables hold at most
about ``window / resolution`` rows per GPU and level, however long the server runs.

Invariant: each bucket is rolled up exactly once. A level's *mark* is the end of its
newest bucket (``max(bucket_start) + resolution``); a pass rolls the closed buckets
between the mark and ``now - SETTLE_S`` (a minute bucket) or the minute level's mark
(an hour bucket: only hours whose minutes are all rolled up), in the caller's
transaction. A crash rolls the whole pass back; a second pass finds the mark moved and
does nothing; a concurrent pass trips the unique key ``(owner, resolution_s,
bucket_start)`` and rolls back. Pruning never deletes a sample or minute bucket the
next level has not yet absorbed.

Worked example: samples at 12:00:10 (util 20) and 12:00:40 (util 60) make the minute
bucket 12:00 with ``samples=2``, avg 40, max 60. Minutes 12:00 (n=2, avg 40) and 12:01
(n=1, avg 100) make the hour bucket 12:00 with ``samples=3``, avg (2*40+100)/3 = 60.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import BindParameter, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from scheduler.domain.errors import NotFound
from scheduler.domain.sync import GpuSample, HostSample
from scheduler.domain.views import GpuSeries, TelemetryPoint
from scheduler.store.jobs import attempts_of, get_job
from scheduler.store.models import (
    AllocationRow,
    AttemptRow,
    GpuRollupRow,
    GpuRow,
    GpuSampleRow,
    HostRollupRow,
    HostSampleRow,
    NodeRow,
)

RAW = 0
MINUTE_S = 60
HOUR_S = 3600
SETTLE_S = 30.0  # a minute bucket is rolled this long after it closed (late commits land)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Retention:
    """How long each level is kept, in seconds (each at least as long as the finer one)."""

    samples_s: float = 6 * 3600.0
    minute_s: float = 7 * 86400.0
    hour_s: float = 400 * 86400.0

    def keep_s(self, resolution_s: int) -> float:
        return {RAW: self.samples_s, MINUTE_S: self.minute_s, HOUR_S: self.hour_s}[resolution_s]


@dataclass(frozen=True)
class _Field:
    rollup: str  # column of the rollup table
    sample: str  # column of the sample table it comes from
    how: str  # "avg" (weighted by samples) or "max"


@dataclass(frozen=True)
class _Kind:
    """A family of telemetry tables: its samples, its rollups, and what is kept."""

    sample: Any
    rollup: Any
    owner: str  # the column naming the GPU or the node
    fields: tuple[_Field, ...]


GPU = _Kind(
    GpuSampleRow,
    GpuRollupRow,
    "gpu_id",
    (
        _Field("utilization_avg_pct", "utilization_pct", "avg"),
        _Field("utilization_max_pct", "utilization_pct", "max"),
        _Field("memory_used_avg_mib", "memory_used_mib", "avg"),
        _Field("temperature_avg_c", "temperature_c", "avg"),
        _Field("power_avg_w", "power_w", "avg"),
    ),
)
HOST = _Kind(
    HostSampleRow,
    HostRollupRow,
    "node_id",
    (
        _Field("cpu_avg_pct", "cpu_pct", "avg"),
        _Field("cpu_max_pct", "cpu_pct", "max"),
        _Field("memory_used_avg_mib", "memory_used_mib", "avg"),
        _Field("load1_avg", "load1", "avg"),
    ),
)
KINDS = (GPU, HOST)


def floor_to(at: datetime, resolution_s: int) -> datetime:
    """The start of the bucket holding ``at`` (buckets are aligned to the Unix epoch)."""
    seconds = int((at - _EPOCH).total_seconds() // resolution_s) * resolution_s
    return _EPOCH + timedelta(seconds=seconds)


def rolled_to(session: Session, kind: _Kind, resolution_s: int) -> datetime | None:
    """The mark of a level: the end of its newest bucket (None before the first)."""
    newest = session.scalar(
        select(func.max(kind.rollup.bucket_start)).where(kind.rollup.resolution_s == resolution_s)
    )
    if newest is None:
        return None
    return _aware(newest) + timedelta(seconds=resolution_s)


def roll_up(session: Session, now: datetime) -> int:
    """Roll every closed, not yet rolled bucket of every kind and level; returns rows written."""
    written = 0
    for kind in KINDS:
        minute_end = floor_to(now - timedelta(seconds=SETTLE_S), MINUTE_S)
        written += _roll_level(session, kind, MINUTE_S, minute_end)
        minute_mark = rolled_to(session, kind, MINUTE_S)
        if minute_mark is not None:
            written += _roll_level(session, kind, HOUR_S, floor_to(minute_mark, HOUR_S))
    return written


def _roll_level(session: Session, kind: _Kind, resolution_s: int, end: datetime) -> int:
    start = rolled_to(session, kind, resolution_s) or _first_source(session, kind, resolution_s)
    if start is None or start >= end:
        return 0
    readings = _source_readings(session, kind, resolution_s, start, end)
    rows = _buckets(kind, resolution_s, readings)
    if rows:
        session.execute(insert(kind.rollup), rows)
    return len(rows)


def _source_of(resolution_s: int) -> int:
    return RAW if resolution_s == MINUTE_S else MINUTE_S


def _first_source(session: Session, kind: _Kind, resolution_s: int) -> datetime | None:
    """Where a level starts before its first bucket: the bucket of its oldest source row."""
    if _source_of(resolution_s) == RAW:
        oldest = session.scalar(select(func.min(kind.sample.at)))
    else:
        oldest = session.scalar(
            select(func.min(kind.rollup.bucket_start)).where(kind.rollup.resolution_s == MINUTE_S)
        )
    return None if oldest is None else floor_to(_aware(oldest), resolution_s)


_Reading = tuple[int, datetime, int, dict[str, float | None]]  # owner, at, samples, values


def _source_readings(
    session: Session, kind: _Kind, resolution_s: int, start: datetime, end: datetime
) -> Iterable[_Reading]:
    if _source_of(resolution_s) == RAW:
        table = kind.sample
        stmt = select(table).where(table.at >= start, table.at < end)
        for row in session.scalars(stmt):
            values = {f.rollup: getattr(row, f.sample) for f in kind.fields}
            yield getattr(row, kind.owner), _aware(row.at), 1, values
        return
    table = kind.rollup
    stmt = select(table).where(
        table.resolution_s == MINUTE_S, table.bucket_start >= start, table.bucket_start < end
    )
    for row in session.scalars(stmt):
        values = {f.rollup: getattr(row, f.rollup) for f in kind.fields}
        yield getattr(row, kind.owner), _aware(row.bucket_start), row.samples, values


def _buckets(kind: _Kind, resolution_s: int, readings: Iterable[_Reading]) -> list[dict[str, Any]]:
    """One rollup row per (owner, bucket): weighted means and maxima of its readings."""
    groups: dict[tuple[int, datetime], list[tuple[int, dict[str, float | None]]]]
    groups = defaultdict(list)
    for owner, at, samples, values in readings:
        groups[(owner, floor_to(at, resolution_s))].append((samples, values))
    rows = []
    for (owner, bucket), members in sorted(groups.items()):
        row: dict[str, Any] = {
            kind.owner: owner,
            "resolution_s": resolution_s,
            "bucket_start": bucket,
            "samples": sum(n for n, _ in members),
        }
        for f in kind.fields:
            known = [(n, v[f.rollup]) for n, v in members if v[f.rollup] is not None]
            row[f.rollup] = _combine(f.how, known)
        rows.append(row)
    return rows


def _combine(how: str, known: Sequence[tuple[int, float | None]]) -> float | None:
    values = [(n, float(v)) for n, v in known if v is not None]
    if not values:
        return None
    if how == "max":
        return max(v for _, v in values)
    return sum(n * v for n, v in values) / sum(n for n, _ in values)


def prune(session: Session, now: datetime, retention: Retention) -> int:
    """Delete what is older than its level's window; returns how many rows went.

    A sample (or minute bucket) the next level has not absorbed yet is kept whatever
    its age, so history is never lost to a rollup that fell behind.
    """
    gone = 0
    for kind in KINDS:
        levels = (
            (RAW, rolled_to(session, kind, MINUTE_S)),
            (MINUTE_S, rolled_to(session, kind, HOUR_S)),
            (HOUR_S, now),  # the last level: nothing absorbs it, age alone decides
        )
        for resolution_s, absorbed_to in levels:
            if absorbed_to is None:
                continue  # the next level has absorbed nothing yet: keep it all
            cutoff = min(now - timedelta(seconds=retention.keep_s(resolution_s)), absorbed_to)
            gone += _rowcount(session.execute(_older_than(kind, resolution_s, cutoff)))
    return gone


def _older_than(kind: _Kind, resolution_s: int, cutoff: datetime) -> Any:
    if resolution_s == RAW:
        return delete(kind.sample).where(kind.sample.at < cutoff)
    return delete(kind.rollup).where(
        kind.rollup.resolution_s == resolution_s, kind.rollup.bucket_start < cutoff
    )


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def row_counts(session: Session) -> dict[str, int]:
    """Rows per telemetry table and level (for tests and operators)."""
    counts = {}
    for kind in KINDS:
        name = kind.sample.__tablename__
        counts[name] = int(session.scalar(select(func.count()).select_from(kind.sample)) or 0)
        for resolution_s in (MINUTE_S, HOUR_S):
            stmt = select(func.count()).where(kind.rollup.resolution_s == resolution_s)
            counts[f"{kind.rollup.__tablename__}/{resolution_s}"] = int(session.scalar(stmt) or 0)
    return counts


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


# --- readings written in batches -----------------------------------------------------


@dataclass(frozen=True)
class NodeReading:
    """What one sync left to write: the node was seen at ``seen_at`` with these readings.

    ``gpus`` pairs each sample with its GPU's id; ``keep`` says whether the readings are
    also stored as sample rows (at most one every few seconds per node)."""

    node_id: int
    seen_at: datetime
    host: HostSample | None
    gpus: tuple[tuple[int, GpuSample], ...]
    keep: bool


# plain statements, so that a list of parameters is one executemany
_NODES, _GPUS = cast(Table, NodeRow.__table__), cast(Table, GpuRow.__table__)


def write_readings(
    session: Session, latest: Sequence[NodeReading], kept: Sequence[NodeReading]
) -> None:
    """Write many syncs' readings in a few statements: each node's newest last-seen time
    and current readings (``latest``, one per node), and the sample rows of ``kept``.

    A reading never moves a node back: one older than the node's ``last_seen_at``
    (another sync of the node was written first, perhaps by another server) leaves the
    node and its GPUs as they are. Nodes are updated in id order, as every batch is, so
    two batches never wait on each other's row locks in a cycle.
    """
    ordered = sorted(latest, key=lambda r: r.node_id)
    if ordered:
        session.execute(
            update(_NODES)
            .where(_NODES.c.id == bindparam("b_id"), _NODES.c.last_seen_at < bindparam("b_seen"))
            .values(last_seen_at=bindparam("b_seen")),
            [{"b_id": r.node_id, "b_seen": r.seen_at} for r in ordered],
        )
    hosts = [r for r in ordered if r.host is not None]
    if hosts:
        session.execute(
            update(_NODES)
            .where(_NODES.c.id == bindparam("b_id"), _NODES.c.last_seen_at <= bindparam("b_seen"))
            .values(cpu_pct=bindparam("b_cpu"), memory_used_mib=bindparam("b_mem")),
            [_host_now(r) for r in hosts],
        )
    gpus = [_gpu_now(gpu_id, sample) for r in ordered for gpu_id, sample in sorted(r.gpus)]
    if gpus:
        session.execute(update(_GPUS).where(_GPUS.c.id == bindparam("b_id")).values(_GPU_NOW), gpus)
    _insert_samples(session, kept)


_GPU_NOW: dict[str, BindParameter[Any]] = {
    name: bindparam(f"b_{name}")
    for name in ("utilization_pct", "memory_used_mib", "temperature_c", "power_w", "ecc_errors")
}


def _host_now(reading: NodeReading) -> dict[str, Any]:
    host = reading.host
    assert host is not None
    return {"b_id": reading.node_id, "b_seen": reading.seen_at} | {
        "b_cpu": host.cpu_pct,
        "b_mem": host.memory_used_mib,
    }


def _gpu_now(gpu_id: int, sample: GpuSample) -> dict[str, Any]:
    return {"b_id": gpu_id} | {f"b_{name}": getattr(sample, name) for name in _GPU_NOW}


def _insert_samples(session: Session, kept: Sequence[NodeReading]) -> None:
    hosts = [
        {"node_id": r.node_id, "at": r.seen_at, "cpu_pct": r.host.cpu_pct}
        | {"memory_used_mib": r.host.memory_used_mib, "load1": r.host.load1}
        for r in kept
        if r.host is not None
    ]
    gpus = [
        {"gpu_id": gpu_id, "at": r.seen_at, "utilization_pct": s.utilization_pct}
        | {"memory_used_mib": s.memory_used_mib, "temperature_c": s.temperature_c}
        | {"power_w": s.power_w}
        for r in kept
        for gpu_id, s in r.gpus
    ]
    if hosts:
        session.execute(insert(HostSampleRow), hosts)
    if gpus:
        session.execute(insert(GpuSampleRow), gpus)
    marks = sorted((r.node_id, r.seen_at) for r in kept if r.host is not None or r.gpus)
    if marks:
        session.execute(
            update(_NODES)
            .where(
                _NODES.c.id == bindparam("b_id"),
                (_NODES.c.last_sample_at.is_(None)) | (_NODES.c.last_sample_at < bindparam("b_at")),
            )
            .values(last_sample_at=bindparam("b_at")),
            [{"b_id": node_id, "b_at": at} for node_id, at in marks],
        )


# --- series: reading history back ---------------------------------------------------


def resolution_for(start: datetime, now: datetime, retention: Retention) -> int:
    """The finest level whose window still reaches back to ``start``."""
    for resolution_s in (RAW, MINUTE_S):
        if start >= now - timedelta(seconds=retention.keep_s(resolution_s)):
            return resolution_s
    return HOUR_S


def gpu_series(
    session: Session,
    gpu_ids: Sequence[int],
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    retention: Retention,
) -> tuple[int, dict[int, list[TelemetryPoint]]]:
    """``(resolution, gpu id -> points in [start, end))``, oldest first.

    The points come from the coarsest level needed to reach ``start``; the newest
    stretch its level has not rolled up yet comes from the finer levels, so a series
    always runs up to the last sample.
    """
    resolution_s = resolution_for(start, now, retention)
    points: dict[int, list[TelemetryPoint]] = {gpu_id: [] for gpu_id in gpu_ids}
    if not gpu_ids:
        return resolution_s, points
    cursor = floor_to(start, resolution_s) if resolution_s else start
    for level in (HOUR_S, MINUTE_S, RAW):
        if level > resolution_s or cursor >= end:
            continue
        mark = rolled_to(session, GPU, level) if level else None
        upto = end if mark is None or level == RAW else min(end, mark)
        if level != RAW and mark is None:
            continue  # nothing rolled at this level yet: the finer one has it all
        for gpu_id, point in _points(session, gpu_ids, level, cursor, upto):
            points[gpu_id].append(point)
        cursor = max(cursor, upto)
    return resolution_s, points


def _points(
    session: Session, gpu_ids: Sequence[int], level: int, start: datetime, end: datetime
) -> Iterable[tuple[int, TelemetryPoint]]:
    if level == RAW:
        raw = select(GpuSampleRow).where(
            GpuSampleRow.gpu_id.in_(gpu_ids), GpuSampleRow.at >= start, GpuSampleRow.at < end
        )
        for s in session.scalars(raw.order_by(GpuSampleRow.at)):
            yield (
                s.gpu_id,
                TelemetryPoint(
                    at=_aware(s.at),
                    resolution_s=RAW,
                    samples=1,
                    utilization_pct=s.utilization_pct,
                    utilization_max_pct=s.utilization_pct,
                    memory_used_mib=s.memory_used_mib,
                    temperature_c=s.temperature_c,
                    power_w=s.power_w,
                ),
            )
        return
    rolled = select(GpuRollupRow).where(
        GpuRollupRow.gpu_id.in_(gpu_ids),
        GpuRollupRow.resolution_s == level,
        GpuRollupRow.bucket_start >= start,
        GpuRollupRow.bucket_start < end,
    )
    for r in session.scalars(rolled.order_by(GpuRollupRow.bucket_start)):
        yield (
            r.gpu_id,
            TelemetryPoint(
                at=_aware(r.bucket_start),
                resolution_s=level,
                samples=r.samples,
                utilization_pct=r.utilization_avg_pct,
                utilization_max_pct=r.utilization_max_pct,
                memory_used_mib=r.memory_used_avg_mib,
                temperature_c=r.temperature_avg_c,
                power_w=r.power_avg_w,
            ),
        )


def attempt_series(
    session: Session,
    attempt: AttemptRow,
    *,
    now: datetime,
    retention: Retention,
    start: datetime | None = None,
) -> tuple[int, datetime, datetime, list[GpuSeries]]:
    """The GPUs an attempt was given, from its start (or ``start``) to its end (or now)."""
    begin = start or attempt.started_at or attempt.created_at
    end = attempt.ended_at or now
    stmt = (
        select(GpuRow, NodeRow.name)
        .join(AllocationRow, AllocationRow.gpu_uuid == GpuRow.uuid)
        .join(NodeRow, NodeRow.id == GpuRow.node_id)
        .where(AllocationRow.attempt_id == attempt.id)
        .order_by(AllocationRow.id)
    )
    gpus = [(gpu, node) for gpu, node in session.execute(stmt).all()]
    resolution_s, points = gpu_series(
        session, [g.id for g, _ in gpus], begin, end, now=now, retention=retention
    )
    series = [
        GpuSeries(node=node, index=gpu.index, uuid=gpu.uuid, points=points[gpu.id])
        for gpu, node in gpus
    ]
    return resolution_s, begin, end, series


def attempt_of_job(session: Session, job_id: int, number: int | None) -> AttemptRow:
    """Attempt ``number`` of a job (its last one if None); NotFound names what is missing."""
    get_job(session, job_id)
    attempts = attempts_of(session, job_id)
    chosen = attempts[-1:] if number is None else [a for a in attempts if a.number == number]
    if not chosen:
        which = "no attempt yet" if number is None else f"no attempt {number}"
        raise NotFound(f"job {job_id} has {which}", field="attempt")
    return chosen[0]


def mean_utilization(
    session: Session,
    gpu_id: int,
    start: datetime,
    stop: datetime,
    *,
    now: datetime,
    retention: Retention,
) -> float | None:
    """A GPU's mean utilisation over ``[start, stop)``, each point weighted by its samples.

    Reads whichever level still covers ``start`` (so accounting over days keeps working
    after the raw samples are gone); None when no sample is known.
    """
    _, series = gpu_series(session, [gpu_id], start, stop, now=now, retention=retention)
    known = [(p.samples, p.utilization_pct) for p in series[gpu_id]]
    return _combine("avg", known)
