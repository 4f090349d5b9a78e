"""How the sink's statements pass a batch's columns."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy.dialects import postgresql

from epochflow.schemas.results import PositionHistoryRow
from epochflow.sinks.models import position_history
from epochflow.sinks.statements import numeric_array, table_columns, unnest
from tests.fixtures.result_rows import hist


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ([], "{}"),
        ([Decimal("1.50"), None, Decimal("-0.000001")], "{1.50,NULL,-0.000001}"),
        ([Decimal("1E+2"), Decimal("123456789012345678901234567890.12")], "{1E+2,123456789012345678901234567890.12}"),
        ([0, 7], "{0,7}"),
    ],
)
def test_amounts_travel_as_the_text_of_a_numeric_array(values, text) -> None:
    assert numeric_array(values) == text


def test_each_column_is_one_array_the_amounts_as_text_cast_on_the_server() -> None:
    names = table_columns(position_history, PositionHistoryRow)
    rows = [hist("T1", quantity=Decimal("10")), hist("T2", quantity=Decimal("3.5"), cost_basis=None)]
    compiled = unnest(position_history, names, rows).compile(dialect=postgresql.dialect())
    params = compiled.params
    assert params["u_transaction_id"] == ["T1", "T2"]
    assert params["u_quantity"] == "{10,3.5}"
    assert params["u_cost_basis"].startswith("{") and params["u_cost_basis"].endswith(",NULL}")
    assert "CAST(%(u_quantity)s::VARCHAR AS NUMERIC[])" in str(compiled)


def test_a_single_column_and_no_rows_make_arrays_too() -> None:
    one = unnest(position_history, ["transaction_id"], [hist("T1")]).compile(dialect=postgresql.dialect())
    assert one.params["u_transaction_id"] == ["T1"]
    none = unnest(position_history, ["transaction_id", "quantity"], []).compile(dialect=postgresql.dialect())
    assert none.params["u_transaction_id"] == [] and none.params["u_quantity"] == "{}"
