"""observability: ``attempts.idle_since`` (set by the idle loop), ``queues.idle_action``
(``none`` or ``stop``; existing queues get ``none``) and ``jobs.submitted_by`` (the
submitting token's name, for usage by user). Only adds columns; the downgrade drops
them (batch mode on SQLite).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-20 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('attempts', sa.Column('idle_since', sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        'queues',
        sa.Column('idle_action', sa.String(length=8), nullable=False, server_default='none'),
    )
    op.add_column('jobs', sa.Column('submitted_by', sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('submitted_by')
    with op.batch_alter_table('queues', schema=None) as batch_op:
        batch_op.drop_column('idle_action')
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_column('idle_since')
