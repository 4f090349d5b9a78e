"""A CSV read into raw events: the header, the type of each row (column, given type, file
name), row numbers as a spreadsheet counts them, and every way a file can be wrong."""

from __future__ import annotations

import pytest

from epochflow.schemas.tabular import read_csv, split_problem, type_of_name

PRICES = "security_id,price_date,price,currency\nS1,2025-03-03,10.50,USD\nS2,2025-03-03,7,EUR\n"


def problems(text: str, event_type: str | None = None) -> list[tuple[int | None, str]]:
    return [(p.row, p.reason) for p in read_csv(text, event_type).problems]


def test_rows_become_raw_events_with_empty_cells_left_out() -> None:
    text = "type,security_id,price_date,price,currency,from_currency,to_currency,rate_date,rate\n" \
           "market_price,S1,2025-03-03,10.50,USD,,,,\n" \
           "fx_rate,,,,,USD,EUR,2025-03-03,0.92\n"
    table = read_csv(text)
    assert table.problems == [] and table.rows == 2
    assert table.events == [
        (2, {"type": "market_price", "security_id": "S1", "price_date": "2025-03-03", "price": "10.50",
             "currency": "USD"}),
        (3, {"type": "fx_rate", "from_currency": "USD", "to_currency": "EUR", "rate_date": "2025-03-03",
             "rate": "0.92"}),
    ]


def test_a_file_of_one_type_needs_no_type_column() -> None:
    table = read_csv(PRICES, "market_price")
    assert [raw["type"] for _, raw in table.events] == ["market_price", "market_price"]
    assert [row for row, _ in table.events] == [2, 3]


@pytest.mark.parametrize("name, kind", [
    ("transactions.csv", "transaction"), ("Prices.CSV", "market_price"), ("fx_rates.csv", "fx_rate"),
    ("fx-rates.csv", "fx_rate"), ("market_price.csv", "market_price"), ("portfolios.csv", "portfolio"),
    ("instruments.csv", "instrument"), ("business_dates.csv", "business_date"), ("export.csv", None),
])
def test_the_type_from_a_file_name(name: str, kind: str | None) -> None:
    assert type_of_name(name) == kind


def test_an_empty_file_is_refused() -> None:
    for text in ("", "\n\n", "\ufeff"):
        assert problems(text) == [(None, "empty: no header row (row 1 names the columns: type, portfolio_id, ...)")]


def test_a_header_alone_is_no_event_and_no_problem() -> None:
    table = read_csv("security_id,price_date,price,currency\n", "market_price")
    assert (table.events, table.problems, table.rows) == ([], [], 0)


def test_no_type_column_and_no_type_given_is_refused_at_the_header() -> None:
    [(row, reason)] = problems(PRICES)
    assert row == 1 and reason.startswith("no type column")


def test_an_unknown_type_is_named_with_the_nearest_one() -> None:
    assert problems("type,date\nbusiness_dates,2025-03-03\ntrade,2025-03-03\nbusiness_date,2025-03-03\n") == [
        (2, "type: unknown event type 'business_dates' (did you mean business_date?); one of portfolio, instrument, "
            "business_date, transaction, market_price, fx_rate"),
        (3, "type: unknown event type 'trade' (did you mean transaction?); one of portfolio, instrument, "
            "business_date, transaction, market_price, fx_rate"),
    ]
    assert problems(PRICES, "prices")[0][1].startswith("type: unknown event type 'prices' (did you mean market_price?)")


def test_an_empty_type_cell_and_a_type_against_the_files_are_refused() -> None:
    text = "type,date\n,2025-03-03\nmarket_price,2025-03-03\n"
    assert problems(text) == [(2, "type: empty: every row needs its event type")]
    assert problems(text, "business_date") == [(3, "type: 'market_price', but every row of this file is a business_date")]


def test_an_unknown_column_is_named_with_the_nearest_field() -> None:
    assert problems("type,date,fee\nbusiness_date,2025-03-03,\n") == [
        (1, "column 'fee': unknown column (did you mean trade_fee?)"),
    ]
    text = "security_id,price_date,prise,currency\nS1,2025-03-03,10,USD\n"
    assert problems(text, "market_price") == [(1, "column 'prise': unknown column of a market_price file (did you mean price?)")]
    # a column of another type is unknown in a file of one type
    assert problems("security_id,quantity\nS1,3\n", "market_price")[0][1].startswith("column 'quantity': unknown column")


def test_a_repeated_column_is_refused() -> None:
    assert problems("security_id,price,price\nS1,1,2\n", "market_price") == [(1, "column 'price' appears twice")]


def test_row_numbers_count_blank_rows_and_quoted_line_breaks_as_a_spreadsheet_does() -> None:
    text = 'type,name,security_id,currency\ninstrument,"Acme\nCorp",S1,USD\n\ninstrument,Other,S2,USD\n'
    table = read_csv(text)
    assert [row for row, _ in table.events] == [2, 4]
    assert table.events[0][1]["name"] == "Acme\nCorp"


def test_a_row_wider_than_the_header_is_refused_and_a_byte_order_mark_is_not_a_column() -> None:
    text = "\ufeffsecurity_id,price_date,price,currency\nS1,2025-03-03,1,USD,oops\nS1,2025-03-04,1,USD,\n"
    table = read_csv(text, "market_price")
    assert [(p.row, p.reason) for p in table.problems] == [(2, "has 5 cells, the header names 4 columns")]
    assert [row for row, _ in table.events] == [3]
    assert (table.rows, table.invalid_rows) == (2, 1)


def test_cells_are_taken_as_written() -> None:
    [(_, raw)] = read_csv("security_id,price_date,price,currency\n S1 ,2025-03-03,\"1,234.50\",USD\n", "market_price").events
    assert raw["security_id"] == " S1 " and raw["price"] == "1,234.50"


def test_a_model_problem_splits_into_field_and_reason() -> None:
    assert split_problem("transaction.quantity: must be positive") == ("quantity", "must be positive")
    assert split_problem("transaction: quantity must be positive for a BUY") == (
        None, "transaction: quantity must be positive for a BUY")
