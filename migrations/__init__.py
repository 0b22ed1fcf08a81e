"""Alembic migrations of corral's schema: one concern per revision."""
