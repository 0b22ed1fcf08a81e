"""Typed SQLAlchemy rows: the persistent state of corral.

Invariants held by the schema itself (not only by code):
- A GPU (node, index) has at most one live allocation: a unique index over
  ``allocations(node_id, gpu_index)`` restricted to ``released_at IS NULL``.
- An attempt number is unique within its job; a queue and a node name are unique.
- An idempotency key names at most one job.
Enums are stored as strings; every timestamp is UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from scheduler.domain.status import AttemptStatus, JobStatus, PartState, TerminationReason

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _str_enum(enum_cls: type[Any], length: int = 16) -> Enum:
    return Enum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class QueueRow(Base):
    """A fair-share unit. ``parent_id`` names its org (one level: an org has no parent).

    ``usage_gpu_s`` is its decayed usage as of ``usage_updated_at`` (the usage loop
    advances both together); an org's counts its children's GPUs.
    """

    __tablename__ = "queues"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    guaranteed_gpus: Mapped[int] = mapped_column(Integer, default=0)
    borrow_limit_gpus: Mapped[int | None] = mapped_column(Integer)
    max_gpus: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("queues.id"))
    usage_gpu_s: Mapped[float] = mapped_column(Float, default=0.0)
    usage_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # what the idle loop does to an attempt of this queue found idle: "none" or "stop"
    idle_action: Mapped[str] = mapped_column(String(8), default="none", server_default="none")

    type_quotas: Mapped[list[QueueTypeQuotaRow]] = relationship(
        order_by="QueueTypeQuotaRow.gpu_type", cascade="all, delete-orphan"
    )


class QueueTypeQuotaRow(Base):
    """A queue's guarantee and cap for one GPU type (on top of its totals)."""

    __tablename__ = "queue_type_quotas"
    __table_args__ = (UniqueConstraint("queue_id", "gpu_type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"))
    gpu_type: Mapped[str] = mapped_column(String(64))
    guaranteed_gpus: Mapped[int] = mapped_column(Integer, default=0)
    max_gpus: Mapped[int | None] = mapped_column(Integer)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_priority_submitted", "status", "priority", "submitted_at"),
        Index("ix_jobs_queue_status", "queue_id", "status"),
        Index("ix_jobs_array_id_array_index", "array_id", "array_index"),
        # `corral jobs` filtered by name, queue or status walks its page in id order
        Index("ix_jobs_name_id", "name", "id"),
        Index("ix_jobs_queue_id_id", "queue_id", "id"),
        Index("ix_jobs_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id"))
    status: Mapped[JobStatus] = mapped_column(_str_enum(JobStatus))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    gpus_requested: Mapped[int] = mapped_column(Integer, default=0)
    submitted_by: Mapped[str | None] = mapped_column(String(128))  # the submitting token's name
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts_count: Mapped[int] = mapped_column(Integer, default=0)
    retries_used: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    termination_reason: Mapped[TerminationReason | None] = mapped_column(
        _str_enum(TerminationReason)
    )
    wait_reason: Mapped[str | None] = mapped_column(String(32))
    wait_message: Mapped[str | None] = mapped_column(String(500))
    wait_position: Mapped[int | None] = mapped_column(Integer)  # 1 = next of its queue
    wait_estimated_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attained_gpu_s: Mapped[float] = mapped_column(Float, default=0.0)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    spec_digest: Mapped[str] = mapped_column(String(64))
    # a job array: the id of its first job (its own id for that one) and this job's index
    array_id: Mapped[int | None] = mapped_column(Integer)
    array_index: Mapped[int | None] = mapped_column(Integer)

    queue: Mapped[QueueRow] = relationship(lazy="joined")


class JobEventRow(Base):
    """One change of a job: a status transition or another notable fact."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    old_status: Mapped[JobStatus | None] = mapped_column(_str_enum(JobStatus))
    new_status: Mapped[JobStatus | None] = mapped_column(_str_enum(JobStatus))
    message: Mapped[str] = mapped_column(Text, default="")


class AttemptRow(Base):
    """One execution of a job on concrete GPUs; spans one part per node.

    ``step``, ``last_checkpoint_step``, ``last_checkpoint_at`` and ``resumed_from_step``
    are what the job's progress file said last (via its agent); None when it keeps none.
    """

    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint("job_id", "number"),
        Index("ix_attempts_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[AttemptStatus] = mapped_column(_str_enum(AttemptStatus))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stop_reason: Mapped[TerminationReason | None] = mapped_column(_str_enum(TerminationReason))
    reason: Mapped[TerminationReason | None] = mapped_column(_str_enum(TerminationReason))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text, default="")
    gpu_count: Mapped[int] = mapped_column(Integer, default=0)
    last_checkpoint_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    step: Mapped[int | None] = mapped_column(BigInteger)
    last_checkpoint_step: Mapped[int | None] = mapped_column(BigInteger)
    resumed_from_step: Mapped[int | None] = mapped_column(BigInteger)
    # set by the idle loop: its GPUs all stayed under the idle threshold since then
    idle_since: Mapped[datetime | None] = mapped_column(UTCDateTime)

    parts: Mapped[list[AttemptPartRow]] = relationship(
        back_populates="attempt", order_by="AttemptPartRow.rank"
    )
    job: Mapped[JobRow] = relationship()


class AttemptPartRow(Base):
    """The part of an attempt that runs on one node (rank 0 is the head)."""

    __tablename__ = "attempt_parts"
    __table_args__ = (
        UniqueConstraint("attempt_id", "rank"),
        UniqueConstraint("attempt_id", "node_id"),
        Index("ix_attempt_parts_node_state", "node_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"))
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"))
    rank: Mapped[int] = mapped_column(Integer)
    state: Mapped[PartState] = mapped_column(_str_enum(PartState), default=PartState.PENDING)
    pid: Mapped[int | None] = mapped_column(Integer)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    stopped_by_agent: Mapped[bool] = mapped_column(default=False)
    message: Mapped[str] = mapped_column(Text, default="")
    log_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    attempt: Mapped[AttemptRow] = relationship(back_populates="parts")
    node: Mapped[NodeRow] = relationship(lazy="joined")


class NodeRow(Base):
    """A machine running an agent. ``drain_changed_at``: when ``drained`` was last set or
    cleared; the bad-node check counts failures from then on."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    hostname: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))  # "up" or "lost"
    drained: Mapped[bool] = mapped_column(default=False)
    drain_reason: Mapped[str | None] = mapped_column(String(500))
    drain_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cpus: Mapped[int] = mapped_column(Integer, default=1)
    memory_total_mib: Mapped[int] = mapped_column(BigInteger, default=0)
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cpu_pct: Mapped[float | None] = mapped_column(Float)
    memory_used_mib: Mapped[int | None] = mapped_column(BigInteger)
    last_sample_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    gpus: Mapped[list[GpuRow]] = relationship(
        back_populates="node", order_by="GpuRow.index", cascade="all, delete-orphan"
    )


class GpuRow(Base):
    """One device, keyed by its UUID; ``present`` is False once its agent stops reporting it."""

    __tablename__ = "gpus"
    __table_args__ = (UniqueConstraint("node_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    uuid: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    gpu_type: Mapped[str] = mapped_column(String(64))
    memory_total_mib: Mapped[int] = mapped_column(BigInteger)
    present: Mapped[bool] = mapped_column(default=True)
    healthy: Mapped[bool] = mapped_column(default=True)
    utilization_pct: Mapped[float | None] = mapped_column(Float)
    memory_used_mib: Mapped[int | None] = mapped_column(BigInteger)
    temperature_c: Mapped[float | None] = mapped_column(Float)
    power_w: Mapped[float | None] = mapped_column(Float)
    ecc_errors: Mapped[int | None] = mapped_column(BigInteger)

    node: Mapped[NodeRow] = relationship(back_populates="gpus")


class AllocationRow(Base):
    """The persisted reservation of one GPU for one attempt; live while released_at is NULL."""

    __tablename__ = "allocations"
    __table_args__ = (
        Index(
            "uq_allocations_live_gpu",
            "node_id",
            "gpu_index",
            unique=True,
            sqlite_where=text("released_at IS NULL"),
            postgresql_where=text("released_at IS NULL"),
        ),
        Index("ix_allocations_attempt_id", "attempt_id"),
        Index("ix_allocations_released_at", "released_at"),  # the usage loop's window
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"))
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"))
    gpu_index: Mapped[int] = mapped_column(Integer)
    gpu_uuid: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class GpuSampleRow(Base):
    """One telemetry reading of one GPU."""

    __tablename__ = "gpu_samples"
    __table_args__ = (Index("ix_gpu_samples_gpu_at", "gpu_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    gpu_id: Mapped[int] = mapped_column(ForeignKey("gpus.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    utilization_pct: Mapped[float | None] = mapped_column(Float)
    memory_used_mib: Mapped[int | None] = mapped_column(BigInteger)
    temperature_c: Mapped[float | None] = mapped_column(Float)
    power_w: Mapped[float | None] = mapped_column(Float)


class HostSampleRow(Base):
    """One telemetry reading of one node's host."""

    __tablename__ = "host_samples"
    __table_args__ = (Index("ix_host_samples_node_at", "node_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    cpu_pct: Mapped[float | None] = mapped_column(Float)
    memory_used_mib: Mapped[int | None] = mapped_column(BigInteger)
    load1: Mapped[float | None] = mapped_column(Float)


class GpuRollupRow(Base):
    """One GPU's samples over one closed bucket ``[bucket_start, +resolution_s)``.

    Written once per bucket (``store/telemetry.py``): the unique key makes a second
    write of the same bucket fail rather than count it twice.
    """

    __tablename__ = "gpu_rollups"
    __table_args__ = (
        UniqueConstraint("gpu_id", "resolution_s", "bucket_start"),
        Index("ix_gpu_rollups_resolution_s_bucket_start", "resolution_s", "bucket_start"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    gpu_id: Mapped[int] = mapped_column(ForeignKey("gpus.id", ondelete="CASCADE"))
    resolution_s: Mapped[int] = mapped_column(Integer)  # 60 or 3600
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime)
    samples: Mapped[int] = mapped_column(Integer)
    utilization_avg_pct: Mapped[float | None] = mapped_column(Float)
    utilization_max_pct: Mapped[float | None] = mapped_column(Float)
    memory_used_avg_mib: Mapped[float | None] = mapped_column(Float)
    temperature_avg_c: Mapped[float | None] = mapped_column(Float)
    power_avg_w: Mapped[float | None] = mapped_column(Float)


class HostRollupRow(Base):
    """One node's host samples over one closed bucket (as ``GpuRollupRow``)."""

    __tablename__ = "host_rollups"
    __table_args__ = (
        UniqueConstraint("node_id", "resolution_s", "bucket_start"),
        Index("ix_host_rollups_resolution_s_bucket_start", "resolution_s", "bucket_start"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    resolution_s: Mapped[int] = mapped_column(Integer)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime)
    samples: Mapped[int] = mapped_column(Integer)
    cpu_avg_pct: Mapped[float | None] = mapped_column(Float)
    cpu_max_pct: Mapped[float | None] = mapped_column(Float)
    memory_used_avg_mib: Mapped[float | None] = mapped_column(Float)
    load1_avg: Mapped[float | None] = mapped_column(Float)


class LogChunkRow(Base):
    """A contiguous piece of one attempt part's output, at a byte offset."""

    __tablename__ = "log_chunks"
    __table_args__ = (UniqueConstraint("part_id", "offset"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    part_id: Mapped[int] = mapped_column(ForeignKey("attempt_parts.id", ondelete="CASCADE"))
    offset: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class UserRow(Base):
    """Someone who holds tokens: ``admin``, ``operator`` or ``user`` (docs/security.md)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MembershipRow(Base):
    """A user may submit to a queue it is a member of (a ``user``'s only way to submit)."""

    __tablename__ = "queue_memberships"
    __table_args__ = (UniqueConstraint("user_id", "queue_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"))


class TokenRow(Base):
    """An API token, stored as its SHA-256 digest only.

    A user's token carries its user's role (kept in step when the role changes); an
    agent's token has role ``agent``, no user, and the one node it may sync as.
    """

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    node_name: Mapped[str | None] = mapped_column(String(128))  # an agent token's node


class AuditEventRow(Base):
    """One state-changing API call, allowed or refused: who, as what, did what, answered how."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_who_at", "who", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    who: Mapped[str | None] = mapped_column(String(128))  # None: no valid token
    role: Mapped[str | None] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(500))
    target: Mapped[str | None] = mapped_column(String(200))  # e.g. "job_id=7"
    status: Mapped[int] = mapped_column(Integer)  # the HTTP status answered


class LeadershipRow(Base):
    """Who leads an elected duty (``scheduler``) among servers on one PostgreSQL.

    ``epoch`` grows by one at every election: a leader's writes check, in their own
    transaction, that the epoch is still the one it was elected in (fencing).
    """

    __tablename__ = "leadership"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger)
    holder: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
