"""Nodes and their GPUs: registration from agent facts, samples, drain, liveness."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from scheduler.domain.errors import NotFound
from scheduler.domain.sync import GpuFacts, GpuSample, HostSample, NodeFacts
from scheduler.store.models import GpuRow, GpuSampleRow, HostSampleRow, NodeRow, utcnow

NODE_UP = "up"
NODE_LOST = "lost"
SAMPLE_MIN_INTERVAL_S = 4.0  # samples arriving faster than this are not stored again


def get_node(session: Session, name: str) -> NodeRow:
    row = session.scalars(select(NodeRow).where(NodeRow.name == name)).unique().one_or_none()
    if row is None:
        raise NotFound(f"no node {name!r}", field="name")
    return row


def list_nodes(session: Session) -> list[NodeRow]:
    return list(session.scalars(select(NodeRow).order_by(NodeRow.name)).unique())


def upsert_node(session: Session, facts: NodeFacts, now: datetime) -> tuple[NodeRow, bool]:
    """Record what an agent says its node is; returns (node, came_back_from_lost)."""
    node = (
        session.scalars(
            select(NodeRow).where(NodeRow.name == facts.name).with_for_update(key_share=True)
        )
        .unique()
        .one_or_none()
    )
    came_back = False
    if node is None:
        node = NodeRow(name=facts.name, state=NODE_UP, registered_at=now, hostname=facts.hostname)
        session.add(node)
    elif node.state == NODE_LOST:
        came_back = True
        node.state = NODE_UP
    node.hostname = facts.hostname
    node.cpus = facts.cpus
    node.memory_total_mib = facts.memory_total_mib
    node.agent_version = facts.agent_version
    node.last_seen_at = now
    session.flush()
    _sync_gpus(session, node, facts.gpus)
    return node, came_back


def _sync_gpus(session: Session, node: NodeRow, facts: list[GpuFacts]) -> None:
    by_index = {g.index: g for g in node.gpus}
    reported = set()
    for fact in facts:
        reported.add(fact.index)
        row = by_index.get(fact.index)
        if row is None or row.uuid != fact.uuid:
            other = session.scalars(select(GpuRow).where(GpuRow.uuid == fact.uuid)).one_or_none()
            if other is not None and other is not row:  # the device moved: forget its old seat
                session.delete(other)
                session.flush()
        if row is None:
            row = GpuRow(node_id=node.id, index=fact.index, uuid=fact.uuid)
            node.gpus.append(row)
        row.uuid = fact.uuid
        row.name = fact.name
        row.gpu_type = fact.gpu_type
        row.memory_total_mib = fact.memory_total_mib
        row.present = True
    for index, row in by_index.items():
        if index not in reported:
            row.present = False
    session.flush()


def record_samples(
    session: Session,
    node: NodeRow,
    host: HostSample | None,
    gpu_samples: list[GpuSample],
    now: datetime,
) -> None:
    """Keep the latest reading on the node/GPU rows; store a sample row at most every few s."""
    keep = node.last_sample_at is None or now - node.last_sample_at >= timedelta(
        seconds=SAMPLE_MIN_INTERVAL_S
    )
    if host is not None:
        node.cpu_pct = host.cpu_pct
        node.memory_used_mib = host.memory_used_mib
        if keep:
            session.add(
                HostSampleRow(
                    node_id=node.id,
                    at=now,
                    cpu_pct=host.cpu_pct,
                    memory_used_mib=host.memory_used_mib,
                    load1=host.load1,
                )
            )
    gpus = {g.index: g for g in node.gpus}
    for sample in gpu_samples:
        gpu = gpus.get(sample.index)
        if gpu is None:
            continue
        gpu.utilization_pct = sample.utilization_pct
        gpu.memory_used_mib = sample.memory_used_mib
        gpu.temperature_c = sample.temperature_c
        gpu.power_w = sample.power_w
        gpu.ecc_errors = sample.ecc_errors
        gpu.healthy = sample.healthy
        if keep:
            session.add(
                GpuSampleRow(
                    gpu_id=gpu.id,
                    at=now,
                    utilization_pct=sample.utilization_pct,
                    memory_used_mib=sample.memory_used_mib,
                    temperature_c=sample.temperature_c,
                    power_w=sample.power_w,
                )
            )
    if keep and (host is not None or gpu_samples):
        node.last_sample_at = now


def set_drained(
    session: Session, name: str, drained: bool, reason: str | None, now: datetime | None = None
) -> NodeRow:
    """Drain or undrain ``name``; a change restarts the node's failure count (``node_health``)."""
    node = get_node(session, name)
    if node.drained != drained:
        node.drain_changed_at = now or utcnow()
    node.drained = drained
    node.drain_reason = reason if drained else None
    return node


def stale_nodes(session: Session, now: datetime, timeout_s: float) -> list[NodeRow]:
    """Nodes that are up but have not synced for ``timeout_s``."""
    cutoff = now - timedelta(seconds=timeout_s)
    stmt = select(NodeRow).where(NodeRow.state == NODE_UP, NodeRow.last_seen_at < cutoff)
    return list(session.scalars(stmt).unique())


def prune_samples(session: Session, older_than: datetime) -> int:
    """Delete samples older than ``older_than``; returns how many went."""
    gone = 0
    for table in (GpuSampleRow, HostSampleRow):
        result = session.execute(delete(table).where(table.at < older_than))
        gone += int(result.rowcount)  # type: ignore[attr-defined]
    return gone
