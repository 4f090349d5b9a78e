"""Reading an input file: every problem, where it is (line, event index, case and index),
the field and the reason; floats and deep nesting refused as `POST /ingest/` refuses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from epochflow.ops.ingest import problem_count, read_events
from epochflow.schemas.documents import load_json
from epochflow.schemas.events import InvalidEvent, parse_event

PORTFOLIO = {"type": "portfolio", "portfolio_id": "P1", "base_currency": "USD"}
PRICE = {"type": "market_price", "security_id": "S1", "price_date": "2025-08-01", "price": "10", "currency": "USD"}
CHECKPOINT = {"type": "checkpoint", "name": "c", "expected": {}}


def txn(tid: str, **change) -> dict:
    return {"type": "transaction", "transaction_id": tid, "portfolio_id": "P1", "security_id": "S1",
            "transaction_type": "BUY", "transaction_date": "2025-08-01T10:00:00Z", "quantity": "10", "price": "5",
            "gross_amount": "50", "trade_fee": "0", "trade_currency": "USD", **change}


def listed(path: Path, case: str | None = None) -> list[str]:
    return [str(problem) for problem in read_events(path, case).problems]


def test_every_problem_of_a_json_lines_file_is_listed_by_line_field_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(PORTFOLIO), json.dumps(txn("T1", quantity="ten", fee=5)), "{not json",
             json.dumps(txn("T2", portfolio_id="P\u0000X")), json.dumps(PRICE), json.dumps([1]),
             json.dumps({**PRICE, "price": "-1"})]
    path.write_text("\n".join(lines) + "\n")
    assert listed(path) == [
        'line 2: transaction.quantity: must be a decimal number written like "12.5" or "-3"',
        "line 2: transaction.fee: unknown field (did you mean trade_fee?)",
        "line 3: not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        "line 4: transaction.portfolio_id: contains control or unprintable characters",
        "line 6: an event must be a JSON object, not a list",
        "line 7: market_price.price: price must not be negative",
    ]
    assert problem_count(read_events(path)) == "6 problems in 5 of 7 events"


def test_a_json_list_names_the_event_index(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps({"events": [PORTFOLIO, txn("T1", transaction_type="GIFT"), PRICE, txn("T2", price="-5")]}))
    problems = listed(path)
    assert [p.split(":")[0] for p in problems] == ["event #1", "event #3"]
    assert "transaction.transaction_type" in problems[0] and "price must not be negative" in problems[1]


def test_more_than_twenty_problems_are_all_listed(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps([txn(f"T{n}", quantity="x") for n in range(30)]))
    assert len(listed(path)) == 30


def test_a_scenario_file_names_the_case_and_index(tmp_path: Path) -> None:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps({"cases": [
        {"name": "one", "events": [PORTFOLIO, txn("T1", trade_currency="usd")]},
        {"name": "two", "events": [CHECKPOINT, {"type": "fx_rate"}]},
        {"name": "three", "events": {"type": "portfolio"}},
        "not a case",
    ]}))
    problems = listed(path)
    assert any(p.startswith("case one event #1: transaction.trade_currency") for p in problems)
    assert any(p.startswith("case two event #1: fx_rate.") for p in problems)
    assert "case three: events: must be a list, not an object" in problems
    assert "case #3: must be an object, not a string" in problems
    only_one = listed(path, "one")
    assert [p for p in only_one if p.startswith("case one ")] == [p for p in problems if p.startswith("case one ")]
    assert not any(p.startswith(("case two", "case three")) for p in only_one)
    assert listed(path, "nope")[-1] == "file: no case named 'nope'"


def test_a_float_is_refused_with_the_reason_post_ingest_gives(tmp_path: Path) -> None:
    body = json.dumps([txn("T1", price="PRICE")]).replace('"PRICE"', "100.123456789012345678")
    (tmp_path / "events.json").write_text(body)
    (tmp_path / "events.jsonl").write_text(json.dumps(PORTFOLIO) + "\n" + body[1:-1] + "\n")
    with pytest.raises(InvalidEvent) as refused:  # what POST /ingest/ does with the same body
        parse_event(load_json(body)[0])
    expected = f"event #0: {refused.value.reason}"
    assert listed(tmp_path / "events.json") == [expected]
    assert listed(tmp_path / "events.jsonl") == [expected.replace("event #0", "line 2")]
    assert "float" in expected


def test_nesting_is_bounded_for_a_whole_file_and_for_each_line(tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text("[" * 10_000 + "]" * 10_000)
    assert listed(tmp_path / "deep.json") == ["file: nested deeper than 64 levels"]
    (tmp_path / "deep.jsonl").write_text(json.dumps(PORTFOLIO) + "\n" + "[" * 100 + "]" * 100 + "\n")
    assert listed(tmp_path / "deep.jsonl") == ["line 2: nested deeper than 64 levels"]


def test_a_good_file_has_no_problem_and_counts_its_events_by_type(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in [PORTFOLIO, txn("T1"), txn("T2"), CHECKPOINT, PRICE]) + "\n")
    reading = read_events(path)
    assert reading.problems == []
    assert reading.counts_by_type() == {"portfolio": 1, "transaction": 2, "market_price": 1}
    assert (reading.checkpoints, reading.total) == (1, 5)


# -- CSV ------------------------------------------------------------------------------------

TXN_HEADER = "transaction_id,portfolio_id,security_id,transaction_type,transaction_date,quantity,price,gross_amount," \
             "trade_fee,trade_currency"


def test_every_problem_of_a_csv_file_names_the_file_the_row_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "transactions.csv"
    path.write_text("\n".join([
        TXN_HEADER,
        "T1,P1,S1,BUY,2025-08-01T10:00:00Z,10,5,50,0,USD",
        "T2,P1,S1,BUY,2025-08-01T10:00:00Z,ten,5,50,0,USD",        # a bad number
        "T3,P1,S1,BUY,01/08/2025,10,5,50,0,usd",                  # a bad date, a bad currency
        "T4,P1,S1,SELL,2025-08-02T10:00:00Z,10,,50,0,USD",        # a SELL without its price
        "T5,P1,S1,BUY,2025-08-01T10:00:00Z,10,5,50,0,USD",
    ]) + "\n")
    assert listed(path) == [
        f'{path} row 3: transaction.quantity: must be a decimal number written like "12.5" or "-3"',
        f"{path} row 4: transaction.transaction_date: must be an ISO 8601 timestamp such as 2025-08-01T10:00:00Z",
        f"{path} row 4: transaction.trade_currency: String should match pattern '^[A-Z]{{3}}$'",
        f"{path} row 5: transaction: price must be positive for a SELL",
    ]
    reading = read_events(path)
    assert problem_count(reading) == "4 problems in 3 of 5 events"
    assert [event.transaction_id for event in reading.events] == ["T1", "T5"]  # the CLI publishes none of them


def test_a_bad_date_of_a_price_file_names_its_row(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("security_id,price_date,price,currency\nS1,2025-02-30,10,USD\nS1,2025-03-01,1e999999,USD\n")
    assert listed(path) == [
        f"{path} row 2: market_price.price_date: Input should be a valid date or datetime, day value is outside "
        "expected range",
        f"{path} row 3: market_price.price: is out of range: at most 18 digits before the decimal point",
    ]


def test_csv_problems_of_the_header_and_the_document_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    assert listed(tmp_path / "empty.csv")[0].startswith(f"{tmp_path / 'empty.csv'}: empty: no header row")
    (tmp_path / "export.csv").write_text("security_id,price\nS1,1\n")
    assert listed(tmp_path / "export.csv")[0].startswith(f"{tmp_path / 'export.csv'} row 1: no type column")
    (tmp_path / "fx_rates.csv").write_text("from_currency,to_currency,rate_date,rate,source\nUSD,EUR,2025-03-03,0.9,ECB\n")
    assert listed(tmp_path / "fx_rates.csv") == [f"{tmp_path / 'fx_rates.csv'} row 1: column 'source': unknown column "
                                                 "of a fx_rate file"]


def test_csv_and_the_equivalent_json_parse_to_identical_events(tmp_path: Path) -> None:
    json_events = [
        PORTFOLIO,
        {"type": "instrument", "security_id": "S1", "currency": "USD", "name": "Acme, Inc."},
        {"type": "business_date", "date": "2025-08-01"},
        txn("T1"),
        txn("T2", transaction_type="DIVIDEND", quantity="0", price="0", gross_amount="12.5", trade_fee="0",
            currency="USD", instrument_id="ACME"),
        PRICE,
        {"type": "fx_rate", "from_currency": "USD", "to_currency": "EUR", "rate_date": "2025-08-01", "rate": "0.9123"},
    ]
    (tmp_path / "events.json").write_text(json.dumps(json_events))
    columns = list(dict.fromkeys(name for event in json_events for name in event))
    rows = [",".join(columns)] + [
        ",".join(f'"{event[c]}"' if "," in str(event.get(c, "")) else str(event.get(c, "")) for c in columns)
        for event in json_events
    ]
    (tmp_path / "events.csv").write_text("\n".join(rows) + "\n")
    from_json, from_csv = read_events(tmp_path / "events.json"), read_events(tmp_path / "events.csv")
    assert from_json.problems == from_csv.problems == []
    assert from_csv.events == from_json.events and len(from_csv.events) == len(json_events)


def test_several_files_are_read_in_order_each_in_its_format(tmp_path: Path) -> None:
    from epochflow.ops.ingest import read_files

    (tmp_path / "prices.csv").write_text("security_id,price_date,price,currency\nS1,2025-08-01,10,USD\n")
    (tmp_path / "book.jsonl").write_text(json.dumps(PORTFOLIO) + "\n" + json.dumps(txn("T1", quantity="-1")) + "\n")
    reading = read_files([tmp_path / "prices.csv", tmp_path / "book.jsonl"])
    assert [event.type for event in reading.events] == ["market_price", "portfolio"]
    assert [str(p).split(": ")[0] for p in reading.problems] == [f"{tmp_path / 'book.jsonl'} line 2"]
    forced = read_files([tmp_path / "book.jsonl"], format="csv")  # --format csv: read as CSV whatever the suffix
    assert forced.problems and str(forced.problems[0]).startswith(f"{tmp_path / 'book.jsonl'} row 1: no type column")


def test_wait_follows_the_roles_the_stack_runs(tmp_path: Path) -> None:
    import dataclasses
    import os

    from epochflow.config import load_settings
    from epochflow.ops.ingest import running_roles
    from epochflow.topology import ROLE_NAMES

    settings = dataclasses.replace(load_settings(), data_dir=tmp_path)
    assert running_roles(settings) == ROLE_NAMES  # no run file: a deployment of every role
    workers = [{"role": "sink"}, {"role": "positions"}, {"role": "positions"}]
    (tmp_path / "run.json").write_text(json.dumps({"pid": os.getpid(), "workers": workers}))
    assert running_roles(settings) == tuple(r for r in ROLE_NAMES if r in ("positions", "sink"))
