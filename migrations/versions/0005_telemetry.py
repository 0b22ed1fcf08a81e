"""telemetry rollups: ``gpu_rollups`` and ``host_rollups`` keep samples downsampled to
1-minute and 1-hour buckets (one row per GPU or node, resolution and bucket), so history
outlives the raw samples' short window. Only new tables; the downgrade drops them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-20 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('gpu_rollups',
    sa.Column('id', _ID, nullable=False),
    sa.Column('gpu_id', sa.Integer(), nullable=False),
    sa.Column('resolution_s', sa.Integer(), nullable=False),
    sa.Column('bucket_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('samples', sa.Integer(), nullable=False),
    sa.Column('utilization_avg_pct', sa.Float(), nullable=True),
    sa.Column('utilization_max_pct', sa.Float(), nullable=True),
    sa.Column('memory_used_avg_mib', sa.Float(), nullable=True),
    sa.Column('temperature_avg_c', sa.Float(), nullable=True),
    sa.Column('power_avg_w', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['gpu_id'], ['gpus.id'], name=op.f('fk_gpu_rollups_gpu_id_gpus'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gpu_rollups')),
    sa.UniqueConstraint('gpu_id', 'resolution_s', 'bucket_start', name=op.f('uq_gpu_rollups_gpu_id_resolution_s_bucket_start'))
    )
    with op.batch_alter_table('gpu_rollups', schema=None) as batch_op:
        batch_op.create_index('ix_gpu_rollups_resolution_s_bucket_start', ['resolution_s', 'bucket_start'], unique=False)

    op.create_table('host_rollups',
    sa.Column('id', _ID, nullable=False),
    sa.Column('node_id', sa.Integer(), nullable=False),
    sa.Column('resolution_s', sa.Integer(), nullable=False),
    sa.Column('bucket_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('samples', sa.Integer(), nullable=False),
    sa.Column('cpu_avg_pct', sa.Float(), nullable=True),
    sa.Column('cpu_max_pct', sa.Float(), nullable=True),
    sa.Column('memory_used_avg_mib', sa.Float(), nullable=True),
    sa.Column('load1_avg', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], name=op.f('fk_host_rollups_node_id_nodes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_host_rollups')),
    sa.UniqueConstraint('node_id', 'resolution_s', 'bucket_start', name=op.f('uq_host_rollups_node_id_resolution_s_bucket_start'))
    )
    with op.batch_alter_table('host_rollups', schema=None) as batch_op:
        batch_op.create_index('ix_host_rollups_resolution_s_bucket_start', ['resolution_s', 'bucket_start'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('host_rollups', schema=None) as batch_op:
        batch_op.drop_index('ix_host_rollups_resolution_s_bucket_start')

    op.drop_table('host_rollups')
    with op.batch_alter_table('gpu_rollups', schema=None) as batch_op:
        batch_op.drop_index('ix_gpu_rollups_resolution_s_bucket_start')

    op.drop_table('gpu_rollups')
