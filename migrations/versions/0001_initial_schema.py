"""initial schema: queues, jobs, events, attempts and their parts, nodes, GPUs,
allocations (one live allocation per GPU), samples, logs and tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 16:18:18.477868
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('nodes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('drained', sa.Boolean(), nullable=False),
    sa.Column('drain_reason', sa.String(length=500), nullable=True),
    sa.Column('cpus', sa.Integer(), nullable=False),
    sa.Column('memory_total_mib', sa.BigInteger(), nullable=False),
    sa.Column('agent_version', sa.String(length=64), nullable=False),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cpu_pct', sa.Float(), nullable=True),
    sa.Column('memory_used_mib', sa.BigInteger(), nullable=True),
    sa.Column('last_sample_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_nodes')),
    sa.UniqueConstraint('name', name=op.f('uq_nodes_name'))
    )
    op.create_table('queues',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('weight', sa.Float(), nullable=False),
    sa.Column('guaranteed_gpus', sa.Integer(), nullable=False),
    sa.Column('borrow_limit_gpus', sa.Integer(), nullable=True),
    sa.Column('max_gpus', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queues')),
    sa.UniqueConstraint('name', name=op.f('uq_queues_name'))
    )
    op.create_table('tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tokens')),
    sa.UniqueConstraint('digest', name=op.f('uq_tokens_digest')),
    sa.UniqueConstraint('name', name=op.f('uq_tokens_name'))
    )
    op.create_table('gpus',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.Integer(), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('gpu_type', sa.String(length=64), nullable=False),
    sa.Column('memory_total_mib', sa.BigInteger(), nullable=False),
    sa.Column('present', sa.Boolean(), nullable=False),
    sa.Column('healthy', sa.Boolean(), nullable=False),
    sa.Column('utilization_pct', sa.Float(), nullable=True),
    sa.Column('memory_used_mib', sa.BigInteger(), nullable=True),
    sa.Column('temperature_c', sa.Float(), nullable=True),
    sa.Column('power_w', sa.Float(), nullable=True),
    sa.Column('ecc_errors', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], name=op.f('fk_gpus_node_id_nodes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gpus')),
    sa.UniqueConstraint('node_id', 'index', name=op.f('uq_gpus_node_id_index')),
    sa.UniqueConstraint('uuid', name=op.f('uq_gpus_uuid'))
    )
    op.create_table('host_samples',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('node_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cpu_pct', sa.Float(), nullable=True),
    sa.Column('memory_used_mib', sa.BigInteger(), nullable=True),
    sa.Column('load1', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], name=op.f('fk_host_samples_node_id_nodes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_host_samples'))
    )
    with op.batch_alter_table('host_samples', schema=None) as batch_op:
        batch_op.create_index('ix_host_samples_node_at', ['node_id', 'at'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('queue_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('gpus_requested', sa.Integer(), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts_count', sa.Integer(), nullable=False),
    sa.Column('retries_used', sa.Integer(), nullable=False),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('termination_reason', sa.String(length=16), nullable=True),
    sa.Column('wait_reason', sa.String(length=32), nullable=True),
    sa.Column('wait_message', sa.String(length=500), nullable=True),
    sa.Column('attained_gpu_s', sa.Float(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=128), nullable=True),
    sa.Column('spec_digest', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['queue_id'], ['queues.id'], name=op.f('fk_jobs_queue_id_queues')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_jobs_idempotency_key'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_queue_status', ['queue_id', 'status'], unique=False)
        batch_op.create_index('ix_jobs_status_priority_submitted', ['status', 'priority', 'submitted_at'], unique=False)

    op.create_table('attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('stop_reason', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.String(length=16), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('gpu_count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_attempts_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attempts')),
    sa.UniqueConstraint('job_id', 'number', name=op.f('uq_attempts_job_id_number'))
    )
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.create_index('ix_attempts_status', ['status'], unique=False)

    op.create_table('gpu_samples',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('gpu_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('utilization_pct', sa.Float(), nullable=True),
    sa.Column('memory_used_mib', sa.BigInteger(), nullable=True),
    sa.Column('temperature_c', sa.Float(), nullable=True),
    sa.Column('power_w', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['gpu_id'], ['gpus.id'], name=op.f('fk_gpu_samples_gpu_id_gpus'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gpu_samples'))
    )
    with op.batch_alter_table('gpu_samples', schema=None) as batch_op:
        batch_op.create_index('ix_gpu_samples_gpu_at', ['gpu_id', 'at'], unique=False)

    op.create_table('job_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('old_status', sa.String(length=16), nullable=True),
    sa.Column('new_status', sa.String(length=16), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_events_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_events'))
    )
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_events_job_id'), ['job_id'], unique=False)

    op.create_table('allocations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('attempt_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.Integer(), nullable=False),
    sa.Column('gpu_index', sa.Integer(), nullable=False),
    sa.Column('gpu_uuid', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['attempt_id'], ['attempts.id'], name=op.f('fk_allocations_attempt_id_attempts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], name=op.f('fk_allocations_node_id_nodes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_allocations'))
    )
    with op.batch_alter_table('allocations', schema=None) as batch_op:
        batch_op.create_index('ix_allocations_attempt_id', ['attempt_id'], unique=False)
        batch_op.create_index('uq_allocations_live_gpu', ['node_id', 'gpu_index'], unique=True, sqlite_where=sa.text('released_at IS NULL'), postgresql_where=sa.text('released_at IS NULL'))

    op.create_table('attempt_parts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('attempt_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.Integer(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('stopped_by_agent', sa.Boolean(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('log_bytes', sa.BigInteger(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['attempt_id'], ['attempts.id'], name=op.f('fk_attempt_parts_attempt_id_attempts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], name=op.f('fk_attempt_parts_node_id_nodes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attempt_parts')),
    sa.UniqueConstraint('attempt_id', 'node_id', name=op.f('uq_attempt_parts_attempt_id_node_id')),
    sa.UniqueConstraint('attempt_id', 'rank', name=op.f('uq_attempt_parts_attempt_id_rank'))
    )
    with op.batch_alter_table('attempt_parts', schema=None) as batch_op:
        batch_op.create_index('ix_attempt_parts_node_state', ['node_id', 'state'], unique=False)

    op.create_table('log_chunks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('part_id', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['part_id'], ['attempt_parts.id'], name=op.f('fk_log_chunks_part_id_attempt_parts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_log_chunks')),
    sa.UniqueConstraint('part_id', 'offset', name=op.f('uq_log_chunks_part_id_offset'))
    )


def downgrade() -> None:
    op.drop_table('log_chunks')
    with op.batch_alter_table('attempt_parts', schema=None) as batch_op:
        batch_op.drop_index('ix_attempt_parts_node_state')

    op.drop_table('attempt_parts')
    with op.batch_alter_table('allocations', schema=None) as batch_op:
        batch_op.drop_index('uq_allocations_live_gpu', sqlite_where=sa.text('released_at IS NULL'), postgresql_where=sa.text('released_at IS NULL'))
        batch_op.drop_index('ix_allocations_attempt_id')

    op.drop_table('allocations')
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_events_job_id'))

    op.drop_table('job_events')
    with op.batch_alter_table('gpu_samples', schema=None) as batch_op:
        batch_op.drop_index('ix_gpu_samples_gpu_at')

    op.drop_table('gpu_samples')
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_attempts_status')

    op.drop_table('attempts')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_status_priority_submitted')
        batch_op.drop_index('ix_jobs_queue_status')

    op.drop_table('jobs')
    with op.batch_alter_table('host_samples', schema=None) as batch_op:
        batch_op.drop_index('ix_host_samples_node_at')

    op.drop_table('host_samples')
    op.drop_table('gpus')
    op.drop_table('tokens')
    op.drop_table('queues')
    op.drop_table('nodes')
