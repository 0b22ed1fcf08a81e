"""node drain time: ``nodes.drain_changed_at``, when ``drained`` was last set or
cleared, so the bad-node check counts failures only since an operator's undrain. Only
adds a nullable column; the downgrade drops it (batch mode on SQLite).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-12 10:05:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('nodes', sa.Column('drain_changed_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('drain_changed_at')
