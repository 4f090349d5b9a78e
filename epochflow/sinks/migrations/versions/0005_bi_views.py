"""views of the current rows for BI tools: bi_positions, bi_daily_snapshots,
bi_transactions, bi_position_timeseries, bi_portfolio_timeseries, bi_cashflows

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

Each view names its columns (never `*`), so a column added to a table later does not
change what a BI tool sees, and keeps only what the read API would show: each key's
current epoch (position_state.epoch), time-series rows still present. The README's
"SQL views for BI tools" section describes every column.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What a reader is told about a key (epochflow.domain.model.reprocessing_status), written
# out: a migration is history and must not change when the code does.
_REPROCESSING_STATUS = "CASE WHEN s.status = 'REPROCESSING' THEN 'IN_PROGRESS' ELSE 'CURRENT' END"

VIEWS: dict[str, str] = {
    "bi_positions": f"""
        SELECT s.portfolio_id, s.security_id, s.epoch, s.status,
               {_REPROCESSING_STATUS} AS reprocessing_status,
               s.watermark_date, s.quantity, s.cost_basis, s.cost_basis_local, s.held_since_date,
               s.first_open_date, s.last_transaction_date,
               v.date AS valuation_date, v.quantity AS valued_quantity, v.market_price, v.market_value,
               v.market_value_local, v.unrealized_gain_loss, v.unrealized_gain_loss_local, v.fx_rate,
               v.price_date, v.valuation_status
        FROM position_state AS s
        LEFT JOIN LATERAL (
            SELECT d.date, d.quantity, d.market_price, d.market_value, d.market_value_local,
                   d.unrealized_gain_loss, d.unrealized_gain_loss_local, d.fx_rate, d.price_date,
                   d.valuation_status
            FROM daily_position_snapshots AS d
            WHERE d.portfolio_id = s.portfolio_id AND d.security_id = s.security_id AND d.epoch = s.epoch
            ORDER BY d.date DESC
            LIMIT 1
        ) AS v ON true
    """,
    "bi_daily_snapshots": f"""
        SELECT d.portfolio_id, d.security_id, d.date, d.epoch, {_REPROCESSING_STATUS} AS reprocessing_status,
               d.quantity, d.cost_basis, d.cost_basis_local, d.market_price, d.market_value,
               d.market_value_local, d.unrealized_gain_loss, d.unrealized_gain_loss_local, d.fx_rate,
               d.valuation_status, d.price_date
        FROM daily_position_snapshots AS d
        JOIN position_state AS s
          ON s.portfolio_id = d.portfolio_id AND s.security_id = d.security_id AND s.epoch = d.epoch
    """,
    # one row per transaction id, its latest version, so every row is current: one dated
    # before the day an epoch bump carried over unchanged keeps the epoch it was costed in
    "bi_transactions": f"""
        SELECT t.transaction_id, t.portfolio_id, t.security_id, t.transaction_type, t.transaction_date,
               CAST(t.transaction_date AT TIME ZONE 'UTC' AS date) AS trade_date,
               t.epoch, {_REPROCESSING_STATUS} AS reprocessing_status,
               t.quantity, t.price, t.gross_amount, t.trade_fee, t.trade_currency, t.net_cost, t.net_cost_local,
               t.realized_gain_loss, t.realized_gain_loss_local, t.transaction_fx_rate,
               'OVERSOLD' = ANY (string_to_array(t.flags, ',')) AS oversold,
               'FX_MISSING' = ANY (string_to_array(t.flags, ',')) AS fx_missing
        FROM transactions AS t
        LEFT JOIN position_state AS s ON s.portfolio_id = t.portfolio_id AND s.security_id = t.security_id
    """,
    "bi_position_timeseries": f"""
        SELECT p.portfolio_id, p.security_id, p.date, p.epoch, {_REPROCESSING_STATUS} AS reprocessing_status,
               p.bod_market_value, p.eod_market_value, p.quantity, p.cost, p.bod_cashflow_position,
               p.eod_cashflow_position, p.bod_cashflow_portfolio, p.eod_cashflow_portfolio
        FROM position_timeseries AS p
        JOIN position_state AS s
          ON s.portfolio_id = p.portfolio_id AND s.security_id = p.security_id AND s.epoch = p.epoch
        WHERE p.present
    """,
    # a portfolio's row has no epoch: each key contributes its current epoch when it is made
    "bi_portfolio_timeseries": """
        SELECT t.portfolio_id, t.date, t.bod_market_value, t.eod_market_value, t.bod_cashflow, t.eod_cashflow,
               t.fees, t.daily_return, t.valuation_status, t.keys_unvalued
        FROM portfolio_timeseries AS t
        WHERE t.present
    """,
    "bi_cashflows": """
        SELECT c.transaction_id, c.portfolio_id, c.security_id, c.transaction_type, c.cashflow_date, c.amount,
               c.currency, c.classification, c.timing, c.calculation_type, c.is_position_flow,
               c.is_portfolio_flow, c.epoch
        FROM cashflows AS c
    """,
}


def upgrade() -> None:
    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {query}")


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
