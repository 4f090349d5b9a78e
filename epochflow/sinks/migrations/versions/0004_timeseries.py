"""time series tables: cashflows, position_timeseries, portfolio_timeseries

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported from the models: a migration is history and must not
# change when the models do.
Money = sa.Numeric(asdecimal=True)


def upgrade() -> None:
    op.create_table(
        "cashflows",
        sa.Column("transaction_id", sa.Text(), nullable=False),
        sa.Column("portfolio_id", sa.Text(), nullable=False),
        sa.Column("security_id", sa.Text(), nullable=False),
        sa.Column("transaction_type", sa.Text(), nullable=False),
        sa.Column("amount", Money, nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("classification", sa.Text(), nullable=False),
        sa.Column("timing", sa.Text(), nullable=False),
        sa.Column("calculation_type", sa.Text(), nullable=False),
        sa.Column("is_position_flow", sa.Boolean(), nullable=False),
        sa.Column("is_portfolio_flow", sa.Boolean(), nullable=False),
        sa.Column("cashflow_date", sa.Date(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("transaction_id", name="pk_cashflows"),
    )
    op.create_index("ix_cashflows_portfolio_date", "cashflows", ["portfolio_id", "cashflow_date"])

    op.create_table(
        "position_timeseries",
        sa.Column("portfolio_id", sa.Text(), nullable=False),
        sa.Column("security_id", sa.Text(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("present", sa.Boolean(), nullable=False),
        *(sa.Column(name, Money, nullable=False) for name in (
            "bod_market_value", "eod_market_value", "quantity", "cost", "bod_cashflow_position",
            "eod_cashflow_position", "bod_cashflow_portfolio", "eod_cashflow_portfolio")),
        sa.PrimaryKeyConstraint("portfolio_id", "security_id", "date", name="pk_position_timeseries"),
    )

    op.create_table(
        "portfolio_timeseries",
        sa.Column("portfolio_id", sa.Text(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("present", sa.Boolean(), nullable=False),
        *(sa.Column(name, Money, nullable=False) for name in (
            "bod_market_value", "eod_market_value", "bod_cashflow", "eod_cashflow", "fees")),
        sa.Column("daily_return", Money, nullable=True),
        sa.Column("valuation_status", sa.Text(), nullable=False),
        sa.Column("keys_unvalued", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("portfolio_id", "date", name="pk_portfolio_timeseries"),
    )


def downgrade() -> None:
    op.drop_table("portfolio_timeseries")
    op.drop_table("position_timeseries")
    op.drop_index("ix_cashflows_portfolio_date", table_name="cashflows")
    op.drop_table("cashflows")
