"""Issue 21 (reading real files): an upload keeps how its CSV was read.

``csv_options`` on ``datasets`` and ``dataset_versions``: the delimiter, encoding and decimal
mark the upload was read with and which of them were given (the job reads the upload with the
given ones; the others are detected from the same bytes). NULL for Parquet and for uploads made
before (a CSV among them is read as it was: UTF-8, commas).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("datasets", sa.Column("csv_options", sa.JSON(), nullable=True))
    op.add_column("dataset_versions", sa.Column("csv_options", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dataset_versions") as batch:
        batch.drop_column("csv_options")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("csv_options")
