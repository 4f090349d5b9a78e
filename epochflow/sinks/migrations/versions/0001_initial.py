"""initial tables: transactions, position_history, position_state, pipeline_barriers

Revision ID: 0001
Revises:
Create Date: 2025-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported from the models: a migration is history and must not
# change when the models do.
Money = sa.Numeric(asdecimal=True)
TimestampTz = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "transactions",
        sa.Column("transaction_id", sa.Text(), nullable=False),
        sa.Column("portfolio_id", sa.Text(), nullable=False),
        sa.Column("security_id", sa.Text(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("transaction_type", sa.Text(), nullable=False),
        sa.Column("transaction_date", TimestampTz, nullable=False),
        sa.Column("quantity", Money, nullable=False),
        sa.Column("price", Money, nullable=False),
        sa.Column("gross_amount", Money, nullable=False),
        sa.Column("trade_fee", Money, nullable=False),
        sa.Column("trade_currency", sa.Text(), nullable=False),
        sa.Column("net_cost", Money, nullable=True),
        sa.Column("net_cost_local", Money, nullable=False),
        sa.Column("realized_gain_loss", Money, nullable=True),
        sa.Column("realized_gain_loss_local", Money, nullable=True),
        sa.Column("transaction_fx_rate", Money, nullable=True),
        sa.Column("flags", sa.Text(), server_default="", nullable=False),
        sa.Column("updated_at", TimestampTz, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("transaction_id", name="pk_transactions"),
    )
    op.create_index(
        "ix_transactions_key_date",
        "transactions",
        ["portfolio_id", "security_id", "transaction_date", "transaction_id"],
    )

    op.create_table(
        "position_history",
        sa.Column("portfolio_id", sa.Text(), nullable=False),
        sa.Column("security_id", sa.Text(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("transaction_id", sa.Text(), nullable=False),
        sa.Column("position_date", sa.Date(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("quantity", Money, nullable=False),
        sa.Column("cost_basis", Money, nullable=True),
        sa.Column("cost_basis_local", Money, nullable=False),
        sa.Column("held_since_date", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint(
            "portfolio_id", "security_id", "epoch", "transaction_id", name="pk_position_history"
        ),
    )
    op.create_index(
        "ix_position_history_key_epoch_seq",
        "position_history",
        ["portfolio_id", "security_id", "epoch", "seq"],
    )

    op.create_table(
        "position_state",
        sa.Column("portfolio_id", sa.Text(), nullable=False),
        sa.Column("security_id", sa.Text(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("txn_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("changed_from", sa.Date(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("watermark_date", sa.Date(), nullable=True),
        sa.Column("quantity", Money, nullable=False),
        sa.Column("cost_basis", Money, nullable=True),
        sa.Column("cost_basis_local", Money, nullable=False),
        sa.Column("held_since_date", sa.Date(), nullable=True),
        sa.Column("first_open_date", sa.Date(), nullable=True),
        sa.Column("last_transaction_date", sa.Date(), nullable=True),
        sa.Column("waiting_for", sa.Text(), server_default="", nullable=False),
        sa.Column("updated_at", TimestampTz, nullable=False),
        sa.PrimaryKeyConstraint("portfolio_id", "security_id", name="pk_position_state"),
    )
    op.create_index("ix_position_state_status", "position_state", ["status"])

    op.create_table(
        "pipeline_barriers",
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("seen_at", TimestampTz, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("token", "stage", "partition", name="pk_pipeline_barriers"),
    )


def downgrade() -> None:
    op.drop_table("pipeline_barriers")
    op.drop_index("ix_position_state_status", table_name="position_state")
    op.drop_table("position_state")
    op.drop_index("ix_position_history_key_epoch_seq", table_name="position_history")
    op.drop_table("position_history")
    op.drop_index("ix_transactions_key_date", table_name="transactions")
    op.drop_table("transactions")
