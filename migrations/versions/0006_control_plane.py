"""control plane: job arrays and the indexes that keep listing and the cycle fast.

``jobs.array_id`` (the id of an array's first job) and ``jobs.array_index`` (the job's
index in it, what ``CORRAL_ARRAY_INDEX`` tells it) with an index over both, so
``corral jobs --array ID`` and cancelling an array read only that array's rows; and
indexes over ``jobs(name, id)``, ``jobs(queue_id, id)`` and ``jobs(status, id)`` so
``corral jobs --name/--queue/--status`` walks its page in id order instead of sorting
every finished job of that name, queue or status. Only adds nullable columns and
indexes; the downgrade drops them (batch mode on SQLite).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-20 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('array_id', sa.Integer(), nullable=True))
    op.add_column('jobs', sa.Column('array_index', sa.Integer(), nullable=True))
    op.create_index('ix_jobs_array_id_array_index', 'jobs', ['array_id', 'array_index'])
    op.create_index('ix_jobs_name_id', 'jobs', ['name', 'id'])
    op.create_index('ix_jobs_queue_id_id', 'jobs', ['queue_id', 'id'])
    op.create_index('ix_jobs_status_id', 'jobs', ['status', 'id'])


def downgrade() -> None:
    op.drop_index('ix_jobs_status_id', table_name='jobs')
    op.drop_index('ix_jobs_queue_id_id', table_name='jobs')
    op.drop_index('ix_jobs_name_id', table_name='jobs')
    op.drop_index('ix_jobs_array_id_array_index', table_name='jobs')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('array_index')
        batch_op.drop_column('array_id')
