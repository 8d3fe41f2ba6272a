"""Issue 24 (warnings reach service users): ``jobs.warnings``, what the job's fit decided about
the data (a column dropped, values folded into ``Other``), as records ``{"code", "column",
"figure", "message"}``; NULL until training has read the table.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("warnings", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("warnings")
