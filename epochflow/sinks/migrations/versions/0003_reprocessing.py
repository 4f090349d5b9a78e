"""fan-out tables: reprocessing_triggers, reprocessing_jobs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported from the models: a migration is history and must not
# change when the models do.
TimestampTz = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reprocessing_triggers",
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("security_id", sa.Text(), nullable=True),
        sa.Column("from_currency", sa.Text(), nullable=True),
        sa.Column("to_currency", sa.Text(), nullable=True),
        sa.Column("earliest_impacted_date", sa.Date(), nullable=True),
        sa.Column("corrections", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("created_at", TimestampTz, nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TimestampTz, nullable=False),
        sa.PrimaryKeyConstraint("subject", "partition", name="pk_reprocessing_triggers"),
    )
    op.create_index("ix_reprocessing_triggers_pending", "reprocessing_triggers", ["pending"])

    op.create_table(
        "reprocessing_jobs",
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("job_type", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("security_id", sa.Text(), nullable=True),
        sa.Column("from_currency", sa.Text(), nullable=True),
        sa.Column("to_currency", sa.Text(), nullable=True),
        sa.Column("earliest_impacted_date", sa.Date(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("last_attempted_at", TimestampTz, nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("keys_total", sa.Integer(), nullable=False),
        sa.Column("keys_reset", sa.Integer(), nullable=False),
        sa.Column("created_at", TimestampTz, nullable=False),
        sa.Column("finished_at", TimestampTz, nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TimestampTz, nullable=False),
        sa.PrimaryKeyConstraint("job_id", name="pk_reprocessing_jobs"),
    )
    op.create_index("ix_reprocessing_jobs_status", "reprocessing_jobs", ["status"])
    op.create_index("ix_reprocessing_jobs_security_id", "reprocessing_jobs", ["security_id"])


def downgrade() -> None:
    op.drop_index("ix_reprocessing_jobs_security_id", table_name="reprocessing_jobs")
    op.drop_index("ix_reprocessing_jobs_status", table_name="reprocessing_jobs")
    op.drop_table("reprocessing_jobs")
    op.drop_index("ix_reprocessing_triggers_pending", table_name="reprocessing_triggers")
    op.drop_table("reprocessing_triggers")
