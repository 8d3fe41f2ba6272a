"""Batches accept an Idempotency-Key, like jobs.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("batches", sa.Column("idempotency_key", sa.String(length=200), nullable=True))
    op.add_column("batches", sa.Column("request_hash", sa.String(length=64), nullable=True))
    # An index, not a constraint: SQLite cannot add a constraint to an existing table.
    op.create_index("ix_batches_idempotency", "batches", ["tenant_id", "idempotency_key"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("ix_batches_idempotency", table_name="batches")
    op.drop_column("batches", "request_hash")
    op.drop_column("batches", "idempotency_key")
