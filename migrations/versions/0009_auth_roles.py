"""auth and roles: ``users`` (name, role), ``queue_memberships`` (the queues a user may
submit to), ``tokens.user_id`` and ``tokens.node_name`` (an agent token's node) and
``audit_events`` (one row per state-changing API call). Existing admin tokens become
the tokens of a new ``admin`` user; other existing tokens keep working unowned. The
downgrade drops the tables and the columns (batch mode on SQLite).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-21 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    users = op.create_table(
        'users',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
        sa.UniqueConstraint('name', name=op.f('uq_users_name')),
    )
    op.create_table(
        'queue_memberships',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('queue_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ['queue_id'], ['queues.id'],
            name=op.f('fk_queue_memberships_queue_id_queues'), ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['user_id'], ['users.id'],
            name=op.f('fk_queue_memberships_user_id_users'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_queue_memberships')),
        sa.UniqueConstraint(
            'user_id', 'queue_id', name=op.f('uq_queue_memberships_user_id_queue_id')
        ),
    )
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('node_name', sa.String(length=128), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_tokens_user_id_users'), 'users', ['user_id'], ['id'],
            ondelete='CASCADE',
        )
    op.create_table(
        'audit_events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('who', sa.String(length=128), nullable=True),
        sa.Column('role', sa.String(length=16), nullable=True),
        sa.Column('method', sa.String(length=8), nullable=False),
        sa.Column('path', sa.String(length=500), nullable=False),
        sa.Column('target', sa.String(length=200), nullable=True),
        sa.Column('status', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events')),
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_at'), ['at'], unique=False)
        batch_op.create_index('ix_audit_events_who_at', ['who', 'at'], unique=False)
    _adopt_admin_tokens(users)


def _adopt_admin_tokens(users: sa.Table) -> None:
    """The admin tokens made before users existed become the ``admin`` user's."""
    conn = op.get_bind()
    tokens = sa.table('tokens', sa.column('role', sa.String), sa.column('user_id', sa.Integer))
    if conn.execute(sa.select(sa.func.count()).select_from(tokens)).scalar_one() == 0:
        return
    now = datetime.now(UTC)
    conn.execute(sa.insert(users).values(name='admin', role='admin', created_at=now))
    admin_id = conn.execute(sa.select(users.c.id).where(users.c.name == 'admin')).scalar_one()
    conn.execute(sa.update(tokens).where(tokens.c.role == 'admin').values(user_id=admin_id))


def downgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_who_at')
        batch_op.drop_index(batch_op.f('ix_audit_events_at'))
    op.drop_table('audit_events')
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_tokens_user_id_users'), type_='foreignkey')
        batch_op.drop_column('node_name')
        batch_op.drop_column('user_id')
    op.drop_table('queue_memberships')
    op.drop_table('users')
