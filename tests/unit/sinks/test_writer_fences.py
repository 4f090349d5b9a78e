"""The sink states `domain.fencing.supersedes` twice from one definition per row kind: over
a batch in Python, and as the upsert's WHERE clause against the stored row. (What the
database then does with it is asserted in tests/integration/sinks/test_writer.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert

from epochflow.domain.fencing import supersedes
from epochflow.sinks import writer
from epochflow.sinks.models import portfolio_valuation_jobs, position_state, transactions

FENCES = {
    # name: (table, fence, SQL predicate)
    "transactions": (transactions, writer.TRANSACTION_FENCE, "transactions.epoch <= excluded.epoch"),
    "position-state": (position_state, writer.STATE_FENCE,
                       "(position_state.epoch, position_state.version) <= (excluded.epoch, excluded.version)"),
    "versioned": (portfolio_valuation_jobs, writer.VERSION_FENCE,
                  "portfolio_valuation_jobs.version <= excluded.version"),
}


@pytest.mark.parametrize("table,fence,sql", [pytest.param(*c, id=n) for n, c in FENCES.items()])
def test_the_where_clause_is_supersedes_on_the_fence(table, fence, sql) -> None:
    excluded = pg_insert(table).excluded
    assert str(writer._superseded(table, excluded, fence).compile(dialect=postgresql.dialect())) == sql


ROWS = {
    # name: (fence, incoming values, stored values)
    "state-newer-version": (writer.STATE_FENCE, (1, 5), (1, 4)),
    "state-equal": (writer.STATE_FENCE, (1, 4), (1, 4)),
    "state-older-epoch": (writer.STATE_FENCE, (0, 9), (1, 1)),
    "transaction-older-epoch": (writer.TRANSACTION_FENCE, (0,), (1,)),
    "job-newer-version": (writer.VERSION_FENCE, (8,), (7,)),
}


@pytest.mark.parametrize("fence,incoming,stored", [pytest.param(*c, id=n) for n, c in ROWS.items()])
def test_the_batch_rule_is_supersedes_on_the_fence(fence, incoming, stored) -> None:
    new, old = SimpleNamespace(**dict(zip(fence, incoming))), SimpleNamespace(**dict(zip(fence, stored)))
    assert writer._replaces(fence)(new, old) is supersedes(incoming, stored)
