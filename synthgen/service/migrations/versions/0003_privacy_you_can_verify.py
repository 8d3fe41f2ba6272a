"""Issue 12 (privacy you can verify): the budget follows content, zombie attempts are fenced, the
audit's holdout split has a secret seed.

``datasets.budget_group`` (the holder of the tenant's datasets of the same bytes) and
``datasets.budget_delta`` (the group's delta cap); ``jobs.output_attempt`` (the attempt whose
outputs a job serves: NULL for a job settled before per-attempt outputs, which is served from
its own folder) and ``jobs.holdout_seed`` (secret, never shown): every existing job gets a random
62-bit seed, the same way a new job does.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("datasets", sa.Column("budget_group", sa.String(length=40), nullable=True))
    op.add_column("datasets", sa.Column("budget_delta", sa.Float(), nullable=True))
    op.create_index(op.f("ix_datasets_budget_group"), "datasets", ["budget_group"], unique=False)
    op.add_column("jobs", sa.Column("output_attempt", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("holdout_seed", sa.BigInteger(), nullable=True))
    conn = op.get_bind()
    jobs = sa.table("jobs", sa.column("id", sa.String()),
                    sa.column("holdout_seed", sa.BigInteger()))
    for (job_id,) in conn.execute(sa.select(jobs.c.id)).all():
        conn.execute(sa.update(jobs).where(jobs.c.id == job_id)
                     .values(holdout_seed=secrets.randbits(62)))
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("holdout_seed", existing_type=sa.BigInteger(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("holdout_seed")
        batch.drop_column("output_attempt")
    op.drop_index(op.f("ix_datasets_budget_group"), table_name="datasets")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("budget_delta")
        batch.drop_column("budget_group")
