"""leadership: the ``leadership`` table, one row per elected duty (``scheduler``) with
the epoch its current leader was elected in, who holds it and since when. The leader
of several servers on one PostgreSQL holds an advisory lock; the epoch fences a
deposed leader's writes. The downgrade drops the table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-20 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'leadership',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('epoch', sa.BigInteger(), nullable=False),
        sa.Column('holder', sa.String(length=255), nullable=False),
        sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_leadership')),
    )


def downgrade() -> None:
    op.drop_table('leadership')
