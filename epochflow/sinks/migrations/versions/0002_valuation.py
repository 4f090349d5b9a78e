"""valuation tables: daily_position_snapshots, portfolio_valuation_jobs

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported from the models: a migration is history and must not
# change when the models do.
Money = sa.Numeric(asdecimal=True)
TimestampTz = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "daily_position_snapshots",
        sa.Column("portfolio_id", sa.Text(), nullable=False),
        sa.Column("security_id", sa.Text(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("quantity", Money, nullable=False),
        sa.Column("cost_basis", Money, nullable=True),
        sa.Column("cost_basis_local", Money, nullable=False),
        sa.Column("market_price", Money, nullable=True),
        sa.Column("market_value", Money, nullable=True),
        sa.Column("market_value_local", Money, nullable=True),
        sa.Column("unrealized_gain_loss", Money, nullable=True),
        sa.Column("unrealized_gain_loss_local", Money, nullable=True),
        sa.Column("fx_rate", Money, nullable=True),
        sa.Column("valuation_status", sa.Text(), nullable=False),
        sa.Column("price_date", sa.Date(), nullable=True),
        sa.Column("updated_at", TimestampTz, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint(
            "portfolio_id", "security_id", "date", "epoch", name="pk_daily_position_snapshots"
        ),
    )
    op.create_index(
        "ix_daily_position_snapshots_key_epoch_date",
        "daily_position_snapshots",
        ["portfolio_id", "security_id", "epoch", "date"],
    )

    op.create_table(
        "portfolio_valuation_jobs",
        sa.Column("portfolio_id", sa.Text(), nullable=False),
        sa.Column("security_id", sa.Text(), nullable=False),
        sa.Column("valuation_date", sa.Date(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TimestampTz, nullable=False),
        sa.PrimaryKeyConstraint(
            "portfolio_id", "security_id", "valuation_date", "epoch", name="pk_portfolio_valuation_jobs"
        ),
    )
    op.create_index("ix_portfolio_valuation_jobs_status", "portfolio_valuation_jobs", ["status"])
    op.create_index(
        "ix_portfolio_valuation_jobs_key_epoch",
        "portfolio_valuation_jobs",
        ["portfolio_id", "security_id", "epoch"],
    )


def downgrade() -> None:
    op.drop_index("ix_portfolio_valuation_jobs_key_epoch", table_name="portfolio_valuation_jobs")
    op.drop_index("ix_portfolio_valuation_jobs_status", table_name="portfolio_valuation_jobs")
    op.drop_table("portfolio_valuation_jobs")
    op.drop_index("ix_daily_position_snapshots_key_epoch_date", table_name="daily_position_snapshots")
    op.drop_table("daily_position_snapshots")
