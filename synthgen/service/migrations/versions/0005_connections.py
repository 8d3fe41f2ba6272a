"""Issue 25 (connectors): connections, the sources of datasets, the snapshot each job read.

``connections`` (a tenant's database or object store; the URL encrypted), ``dataset_sources``
(a dataset read from a connection's table or query; one per source and tenant) and
``job_snapshots`` (the version a job's first attempt read, and the source's column types).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("display", sa.String(2000), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_connections_tenant_id", "connections", ["tenant_id"])
    op.create_table(
        "dataset_sources",
        sa.Column("dataset_id", sa.String(40), sa.ForeignKey("datasets.id"), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("connection_id", sa.String(40), sa.ForeignKey("connections.id"),
                  nullable=False),
        sa.Column("table_name", sa.String(300), nullable=True),
        sa.Column("query", sa.Text(), nullable=True),
        sa.Column("source_key", sa.String(64), nullable=False),
        sa.Column("user_schema", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("tenant_id", "source_key"),
    )
    op.create_index("ix_dataset_sources_tenant_id", "dataset_sources", ["tenant_id"])
    op.create_index("ix_dataset_sources_connection_id", "dataset_sources", ["connection_id"])
    op.create_table(
        "job_snapshots",
        sa.Column("job_id", sa.String(40), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("column_types", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_snapshots")
    op.drop_index("ix_dataset_sources_connection_id", "dataset_sources")
    op.drop_index("ix_dataset_sources_tenant_id", "dataset_sources")
    op.drop_table("dataset_sources")
    op.drop_index("ix_connections_tenant_id", "connections")
    op.drop_table("connections")
