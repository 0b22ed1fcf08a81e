"""fair share: queues get an org (parent), decayed usage and per-GPU-type quotas; jobs
keep their place in line and estimated start; attempts their last checkpoint;
allocations an index on released_at for the usage loop's window.

On SQLite the foreign key from ``queues`` to itself needs ``queues`` rebuilt (batch
mode); ``store.db`` runs migrations with foreign keys off and checks them before the
commit, as SQLite's ALTER TABLE procedure asks. Every other change only adds columns.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('queues', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('usage_gpu_s', sa.Float(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('usage_updated_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_queues_parent_id_queues'), 'queues', ['parent_id'], ['id'])
    op.create_table('queue_type_quotas',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('queue_id', sa.Integer(), nullable=False),
    sa.Column('gpu_type', sa.String(length=64), nullable=False),
    sa.Column('guaranteed_gpus', sa.Integer(), nullable=False),
    sa.Column('max_gpus', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['queue_id'], ['queues.id'], name=op.f('fk_queue_type_quotas_queue_id_queues'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queue_type_quotas')),
    sa.UniqueConstraint('queue_id', 'gpu_type', name=op.f('uq_queue_type_quotas_queue_id_gpu_type'))
    )
    op.add_column('jobs', sa.Column('wait_position', sa.Integer(), nullable=True))
    op.add_column('jobs', sa.Column('wait_estimated_start', sa.DateTime(timezone=True), nullable=True))
    op.add_column('attempts', sa.Column('last_checkpoint_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('allocations', schema=None) as batch_op:
        batch_op.create_index('ix_allocations_released_at', ['released_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('allocations', schema=None) as batch_op:
        batch_op.drop_index('ix_allocations_released_at')
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_column('last_checkpoint_at')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('wait_estimated_start')
        batch_op.drop_column('wait_position')
    op.drop_table('queue_type_quotas')
    with op.batch_alter_table('queues', schema=None) as batch_op:
        batch_op.drop_column('usage_updated_at')
        batch_op.drop_column('usage_gpu_s')
        batch_op.drop_constraint(batch_op.f('fk_queues_parent_id_queues'), type_='foreignkey')
        batch_op.drop_column('parent_id')
