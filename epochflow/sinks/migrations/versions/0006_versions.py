"""every version of the rows reads show: <table>_versions kept by triggers, the as_at schema
of views that read them as at a system time, what opened a key's epoch, and the step or
job each transaction, history and snapshot row came from

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported from the models: a migration is history and must not
# change when the models do. Each versioned table: its primary key, its columns (name,
# PostgreSQL type, nullable) as they are once this revision's own change is made.
VERSIONED: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str, bool], ...]]] = {
    'transactions': (
        ('transaction_id',),
        (
            ('transaction_id', 'TEXT', False),
            ('portfolio_id', 'TEXT', False),
            ('security_id', 'TEXT', False),
            ('epoch', 'INTEGER', False),
            ('transaction_type', 'TEXT', False),
            ('transaction_date', 'TIMESTAMP WITH TIME ZONE', False),
            ('quantity', 'NUMERIC', False),
            ('price', 'NUMERIC', False),
            ('gross_amount', 'NUMERIC', False),
            ('trade_fee', 'NUMERIC', False),
            ('trade_currency', 'TEXT', False),
            ('net_cost', 'NUMERIC', True),
            ('net_cost_local', 'NUMERIC', False),
            ('realized_gain_loss', 'NUMERIC', True),
            ('realized_gain_loss_local', 'NUMERIC', True),
            ('transaction_fx_rate', 'NUMERIC', True),
            ('flags', 'TEXT', False),
            ('updated_at', 'TIMESTAMP WITH TIME ZONE', False),
            ('version', 'BIGINT', True),
        ),
    ),
    'position_history': (
        ('portfolio_id', 'security_id', 'epoch', 'transaction_id'),
        (
            ('portfolio_id', 'TEXT', False),
            ('security_id', 'TEXT', False),
            ('epoch', 'INTEGER', False),
            ('transaction_id', 'TEXT', False),
            ('position_date', 'DATE', False),
            ('seq', 'BIGINT', False),
            ('quantity', 'NUMERIC', False),
            ('cost_basis', 'NUMERIC', True),
            ('cost_basis_local', 'NUMERIC', False),
            ('held_since_date', 'DATE', True),
            ('version', 'BIGINT', True),
        ),
    ),
    'position_state': (
        ('portfolio_id', 'security_id'),
        (
            ('portfolio_id', 'TEXT', False),
            ('security_id', 'TEXT', False),
            ('epoch', 'INTEGER', False),
            ('version', 'BIGINT', False),
            ('generation', 'BIGINT', False),
            ('txn_count', 'BIGINT', False),
            ('changed_from', 'DATE', True),
            ('status', 'TEXT', False),
            ('watermark_date', 'DATE', True),
            ('quantity', 'NUMERIC', False),
            ('cost_basis', 'NUMERIC', True),
            ('cost_basis_local', 'NUMERIC', False),
            ('held_since_date', 'DATE', True),
            ('first_open_date', 'DATE', True),
            ('last_transaction_date', 'DATE', True),
            ('waiting_for', 'TEXT', False),
            ('updated_at', 'TIMESTAMP WITH TIME ZONE', False),
            ('epoch_trigger', 'TEXT', True),
            ('epoch_rebuilt_from', 'DATE', True),
        ),
    ),
    'daily_position_snapshots': (
        ('portfolio_id', 'security_id', 'date', 'epoch'),
        (
            ('portfolio_id', 'TEXT', False),
            ('security_id', 'TEXT', False),
            ('date', 'DATE', False),
            ('epoch', 'INTEGER', False),
            ('quantity', 'NUMERIC', False),
            ('cost_basis', 'NUMERIC', True),
            ('cost_basis_local', 'NUMERIC', False),
            ('market_price', 'NUMERIC', True),
            ('market_value', 'NUMERIC', True),
            ('market_value_local', 'NUMERIC', True),
            ('unrealized_gain_loss', 'NUMERIC', True),
            ('unrealized_gain_loss_local', 'NUMERIC', True),
            ('fx_rate', 'NUMERIC', True),
            ('valuation_status', 'TEXT', False),
            ('price_date', 'DATE', True),
            ('updated_at', 'TIMESTAMP WITH TIME ZONE', False),
            ('job_version', 'BIGINT', True),
        ),
    ),
    'cashflows': (
        ('transaction_id',),
        (
            ('transaction_id', 'TEXT', False),
            ('portfolio_id', 'TEXT', False),
            ('security_id', 'TEXT', False),
            ('transaction_type', 'TEXT', False),
            ('amount', 'NUMERIC', False),
            ('currency', 'TEXT', False),
            ('classification', 'TEXT', False),
            ('timing', 'TEXT', False),
            ('calculation_type', 'TEXT', False),
            ('is_position_flow', 'BOOLEAN', False),
            ('is_portfolio_flow', 'BOOLEAN', False),
            ('cashflow_date', 'DATE', False),
            ('epoch', 'INTEGER', False),
            ('version', 'BIGINT', False),
        ),
    ),
    'position_timeseries': (
        ('portfolio_id', 'security_id', 'date'),
        (
            ('portfolio_id', 'TEXT', False),
            ('security_id', 'TEXT', False),
            ('date', 'DATE', False),
            ('epoch', 'INTEGER', False),
            ('version', 'BIGINT', False),
            ('present', 'BOOLEAN', False),
            ('bod_market_value', 'NUMERIC', False),
            ('eod_market_value', 'NUMERIC', False),
            ('quantity', 'NUMERIC', False),
            ('cost', 'NUMERIC', False),
            ('bod_cashflow_position', 'NUMERIC', False),
            ('eod_cashflow_position', 'NUMERIC', False),
            ('bod_cashflow_portfolio', 'NUMERIC', False),
            ('eod_cashflow_portfolio', 'NUMERIC', False),
        ),
    ),
    'portfolio_timeseries': (
        ('portfolio_id', 'date'),
        (
            ('portfolio_id', 'TEXT', False),
            ('date', 'DATE', False),
            ('version', 'BIGINT', False),
            ('present', 'BOOLEAN', False),
            ('bod_market_value', 'NUMERIC', False),
            ('eod_market_value', 'NUMERIC', False),
            ('bod_cashflow', 'NUMERIC', False),
            ('eod_cashflow', 'NUMERIC', False),
            ('fees', 'NUMERIC', False),
            ('daily_return', 'NUMERIC', True),
            ('valuation_status', 'TEXT', False),
            ('keys_unvalued', 'INTEGER', False),
        ),
    ),
}

# the tables' own indexes, made again on their versions: (name suffix, columns)
INDEXES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "transactions": (("key_date", ("portfolio_id", "security_id", "transaction_date", "transaction_id")),),
    "position_history": (("key_epoch_seq", ("portfolio_id", "security_id", "epoch", "seq")),),
    "position_state": (("status", ("status",)),),
    "daily_position_snapshots": (("key_epoch_date", ("portfolio_id", "security_id", "epoch", "date")),),
    "cashflows": (("portfolio_date", ("portfolio_id", "cashflow_date")),),
}

AS_AT_SCHEMA = "as_at"

# The system time of the write in progress, fixed on its first call: it takes the lock the
# reads share (exclusively, until the transaction ends) and reads the clock once it holds
# it (`sinks.versions`). The sink's writer calls it first; any other writer gets the same
# rule from its first versioned statement.
SYSTEM_TIME = """
CREATE FUNCTION epochflow_system_time() RETURNS timestamptz LANGUAGE plpgsql AS $$
DECLARE
  stamped text := current_setting('epochflow.system_time', true);
BEGIN
  IF stamped IS NULL OR stamped = '' THEN
    PERFORM pg_advisory_xact_lock(7309464667967158643);
    stamped := clock_timestamp()::text;
    PERFORM set_config('epochflow.system_time', stamped, true);
  END IF;
  RETURN stamped::timestamptz;
END
$$
"""
# The system time an as-at read reads at (set by the reader, `sinks.versions`).
READ_TIME = """
CREATE FUNCTION epochflow_read_time() RETURNS timestamptz LANGUAGE sql STABLE AS $$
  SELECT current_setting('epochflow.as_at')::timestamptz
$$
"""


def _keep_versions(table: str, pk: tuple[str, ...], names: list[str]) -> str:
    """The statement triggers' function, set-based over the statement's rows: an update or
    delete closes the rows' open versions (one opened by the same write is dropped
    instead: no version lasts no time), an insert or update opens new ones."""
    same_row = " AND ".join(f"v.{c} = o.{c}" for c in pk)
    return f"""
CREATE FUNCTION epochflow_keep_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  at timestamptz := epochflow_system_time();
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    DELETE FROM {table}_versions v USING old_rows o WHERE {same_row} AND v.system_to IS NULL AND v.system_from = at;
    UPDATE {table}_versions v SET system_to = at FROM old_rows o WHERE {same_row} AND v.system_to IS NULL;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO {table}_versions ({", ".join(names)}, system_from) SELECT {", ".join(names)}, at FROM new_rows;
  END IF;
  RETURN NULL;
END
$$
"""


# one statement trigger per event, each with the transition tables its event has
TRIGGERS = {
    "insert": "AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows",
    "update": "AFTER UPDATE ON {table} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "delete": "AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows",
}


def _column(name: str, type_: str, nullable: bool) -> sa.Column:
    types = {"TEXT": sa.Text(), "INTEGER": sa.Integer(), "BIGINT": sa.BigInteger(), "DATE": sa.Date(),
             "BOOLEAN": sa.Boolean(), "NUMERIC": sa.Numeric(asdecimal=True),
             "TIMESTAMP WITH TIME ZONE": sa.DateTime(timezone=True)}
    return sa.Column(name, types[type_], nullable=nullable)


def upgrade() -> None:
    op.add_column("position_state", sa.Column("epoch_trigger", sa.Text(), nullable=True))
    op.add_column("position_state", sa.Column("epoch_rebuilt_from", sa.Date(), nullable=True))
    # the step or job a row came from: the sink never lets an earlier one replace it
    op.add_column("transactions", sa.Column("version", sa.BigInteger(), nullable=True))
    op.add_column("position_history", sa.Column("version", sa.BigInteger(), nullable=True))
    op.add_column("daily_position_snapshots", sa.Column("job_version", sa.BigInteger(), nullable=True))
    op.execute(SYSTEM_TIME)
    op.execute(READ_TIME)
    op.execute(f"CREATE SCHEMA {AS_AT_SCHEMA}")
    for table, (pk, columns) in VERSIONED.items():
        names = [name for name, _, _ in columns]
        op.create_table(
            f"{table}_versions",
            sa.Column("version_id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
            *(_column(*column) for column in columns),
            sa.Column("system_from", sa.DateTime(timezone=True), nullable=False),
            sa.Column("system_to", sa.DateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("version_id", name=f"pk_{table}_versions"),
        )
        op.create_index(f"ix_{table}_versions_key", f"{table}_versions", [*pk, "system_from"])
        for suffix, indexed in INDEXES.get(table, ()):
            op.create_index(f"ix_{table}_versions_{suffix}", f"{table}_versions", list(indexed))
        # the rows already there are current from now on
        op.execute(f"INSERT INTO {table}_versions ({', '.join(names)}, system_from) "
                   f"SELECT {', '.join(names)}, now() FROM {table}")
        op.execute(_keep_versions(table, pk, names))
        for event, when in TRIGGERS.items():
            op.execute(f"CREATE TRIGGER keep_versions_{event} {when.format(table=table)} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION epochflow_keep_{table}()")
        # the table as it was at epochflow_read_time(): same name, same columns
        op.execute(f"CREATE VIEW {AS_AT_SCHEMA}.{table} AS SELECT {', '.join(names)} FROM {table}_versions "
                   "WHERE system_from <= epochflow_read_time() "
                   "AND (system_to IS NULL OR system_to > epochflow_read_time())")


def downgrade() -> None:
    for table in VERSIONED:
        op.execute(f"DROP VIEW {AS_AT_SCHEMA}.{table}")
        for event in TRIGGERS:
            op.execute(f"DROP TRIGGER keep_versions_{event} ON {table}")
        op.execute(f"DROP FUNCTION epochflow_keep_{table}()")
        op.drop_table(f"{table}_versions")
    op.execute(f"DROP SCHEMA {AS_AT_SCHEMA}")
    op.execute("DROP FUNCTION epochflow_read_time()")
    op.execute("DROP FUNCTION epochflow_system_time()")
    op.drop_column("daily_position_snapshots", "job_version")
    op.drop_column("position_history", "version")
    op.drop_column("transactions", "version")
    op.drop_column("position_state", "epoch_rebuilt_from")
    op.drop_column("position_state", "epoch_trigger")
