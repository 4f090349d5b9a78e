"""The sink states `domain.fencing.supersedes` twice from one definition per row kind: over
a batch in Python, and as the upsert's WHERE clause against the stored row; a fence column
sent empty counts as -1. (What the database then does with it is asserted in
tests/integration/sinks/test_writer.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert

from epochflow.domain.fencing import supersedes
from epochflow.sinks import statements as writer
from epochflow.sinks.models import daily_position_snapshots, portfolio_valuation_jobs, position_state, transactions

FENCES = {
    # name: (table, fence, SQL predicate)
    "transactions": (transactions, writer.TRANSACTION_FENCE,
                     "(coalesce(transactions.epoch, -1), coalesce(transactions.version, -1)) "
                     "<= (coalesce(excluded.epoch, -1), coalesce(excluded.version, -1))"),
    "position-state": (position_state, writer.STATE_FENCE,
                       "(coalesce(position_state.epoch, -1), coalesce(position_state.version, -1)) "
                       "<= (coalesce(excluded.epoch, -1), coalesce(excluded.version, -1))"),
    "versioned": (portfolio_valuation_jobs, writer.VERSION_FENCE,
                  "coalesce(portfolio_valuation_jobs.version, -1) <= coalesce(excluded.version, -1)"),
    "snapshots": (daily_position_snapshots, writer.SNAPSHOT_FENCE,
                  "coalesce(daily_position_snapshots.job_version, -1) "
                  "<= coalesce(excluded.job_version, -1)"),
}


@pytest.mark.parametrize("table,fence,sql", [pytest.param(*c, id=n) for n, c in FENCES.items()])
def test_the_where_clause_is_supersedes_on_the_fence(table, fence, sql) -> None:
    excluded = pg_insert(table).excluded
    assert str(writer.superseded(table, excluded, fence).compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})) == sql


ROWS = {
    # name: (fence, incoming values, stored values)
    "state-newer-version": (writer.STATE_FENCE, (1, 5), (1, 4)),
    "state-equal": (writer.STATE_FENCE, (1, 4), (1, 4)),
    "state-older-epoch": (writer.STATE_FENCE, (0, 9), (1, 1)),
    "transaction-older-epoch": (writer.TRANSACTION_FENCE, (0, 9), (1, 1)),
    "transaction-earlier-step": (writer.TRANSACTION_FENCE, (1, 3), (1, 4)),
    "transaction-sent-before-versions": (writer.TRANSACTION_FENCE, (1, None), (1, 4)),
    "snapshot-later-job": (writer.SNAPSHOT_FENCE, (5,), (4,)),
    "snapshot-over-a-carried-copy": (writer.SNAPSHOT_FENCE, (0,), (None,)),
    "job-newer-version": (writer.VERSION_FENCE, (8,), (7,)),
}


@pytest.mark.parametrize("fence,incoming,stored", [pytest.param(*c, id=n) for n, c in ROWS.items()])
def test_the_batch_rule_is_supersedes_on_the_fence(fence, incoming, stored) -> None:
    new, old = SimpleNamespace(**dict(zip(fence, incoming))), SimpleNamespace(**dict(zip(fence, stored)))
    assert writer.replaces(fence)(new, old) is supersedes(*(tuple(-1 if v is None else v for v in values) for values in (incoming, stored)))
