"""attempt progress: the step an attempt reached, its last checkpoint's step and the step
it resumed from, as the job's progress file reports them (``attempts.last_checkpoint_at``
came with 0002). Only adds nullable columns; the downgrade drops them (batch mode on
SQLite).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-12 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('attempts', sa.Column('step', sa.BigInteger(), nullable=True))
    op.add_column('attempts', sa.Column('last_checkpoint_step', sa.BigInteger(), nullable=True))
    op.add_column('attempts', sa.Column('resumed_from_step', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_column('resumed_from_step')
        batch_op.drop_column('last_checkpoint_step')
        batch_op.drop_column('step')
