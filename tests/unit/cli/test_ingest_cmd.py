"""`epochflow ingest --dry-run FILE`: every problem listed, exit status 1; a good file exits
0 with what would be published; no broker needed, none contacted."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from epochflow.cli.main import cli
from epochflow.config import VARIABLES

PORTFOLIO = {"type": "portfolio", "portfolio_id": "P1", "base_currency": "USD"}
PRICE = {"type": "market_price", "security_id": "S1", "price_date": "2025-08-01", "price": "10", "currency": "USD"}
TXN = {"type": "transaction", "transaction_id": "T1", "portfolio_id": "P1", "security_id": "S1",
       "transaction_type": "BUY", "transaction_date": "2025-08-01T10:00:00Z", "quantity": "10", "price": "5",
       "gross_amount": "50", "trade_fee": "0", "trade_currency": "USD"}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings point at a closed port, and any connection attempt fails the test."""
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("EPOCHFLOW_KAFKA_URL", f"127.0.0.1:{closed_port}")
    monkeypatch.setenv("EPOCHFLOW_DATA_DIR", str(tmp_path / "data"))

    def refuse(*args, **kwargs):
        raise AssertionError(f"--dry-run opened a connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def dry_run(path: Path, *args: str):
    return CliRunner().invoke(cli, ["ingest", "--dry-run", str(path), *args])


def test_a_bad_file_lists_every_problem_then_the_count_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = [PORTFOLIO, {**TXN, "quantity": "ten"}, {**TXN, "fee": 5}, PRICE,
              {**PRICE, "security_id": "S\x01"}, {**TXN, "transaction_date": "yesterday", "trade_currency": "usd"}]
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    result = dry_run(path)
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert [line.split(": ")[:2] for line in lines[:-1]] == [
        ["line 2", "transaction.quantity"],
        ["line 3", "transaction.fee"],
        ["line 5", "market_price.security_id"],
        ["line 6", "transaction.transaction_date"],
        ["line 6", "transaction.trade_currency"],
    ]
    assert "unknown field (did you mean trade_fee?)" in lines[1]
    assert "control or unprintable" in lines[2]
    assert lines[-1] == f"{path}: 5 problems in 4 of 6 events"


def test_a_good_file_exits_0_with_what_would_be_published(tmp_path: Path) -> None:
    path = tmp_path / "cases.json"
    checkpoint = {"type": "checkpoint", "name": "c", "expected": {}}
    path.write_text(json.dumps({"cases": [{"name": "a", "events": [PORTFOLIO, TXN, checkpoint, PRICE, TXN]}]}))
    result = dry_run(path)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{path}: 5 events, all valid (dry run: nothing published)",
        "would publish 4 events: 1 portfolio, 2 transaction, 1 market_price",
        "would skip 1 checkpoint(s): only the scenario runner acts on them",
    ]


def test_without_dry_run_an_invalid_file_lists_the_same_problems_and_publishes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps([{**TXN, "quantity": "x"} for _ in range(25)]))
    result = CliRunner().invoke(cli, ["ingest", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 26 and lines[24].startswith("event #24: transaction.quantity")
    assert lines[-1] == f"{path}: 25 problems in 25 of 25 events; nothing was published"


EXAMPLE_CSV = sorted((Path(__file__).resolve().parents[3] / "examples" / "csv_ingest").glob("*.csv"))


def test_the_example_csv_files_dry_run_clean() -> None:
    result = CliRunner().invoke(cli, ["ingest", "--dry-run", *map(str, EXAMPLE_CSV)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{len(EXAMPLE_CSV)} files: 29 events, all valid (dry run: nothing published)",
        "would publish 29 events: 10 fx_rate, 10 market_price, 1 portfolio, 2 instrument, 1 business_date, 5 transaction",
    ]


def test_a_csv_dry_run_lists_every_problem_by_file_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("security_id,price_date,price,currency\nS1,2025-08-01,10,USD\nS1,2025-08-02,ten,USD\n"
                    "S1,2025-08-03,10,usd\n")
    result = dry_run(path)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f'{path} row 3: market_price.price: must be a decimal number written like "12.5" or "-3"',
        f"{path} row 4: market_price.currency: String should match pattern '^[A-Z]{{3}}$'",
        f"{path}: 2 problems in 2 of 3 events",
    ]


def test_format_and_type_override_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_text("from_currency,to_currency,rate_date,rate\nUSD,EUR,2025-08-01,0.92\n")
    result = dry_run(path, "--format", "csv", "--type", "fx_rate")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == "would publish 1 events: 1 fx_rate"
    refused = dry_run(path, "--type", "fx_rate")  # .txt reads as JSON: --type means nothing there
    assert refused.exit_code == 2 and "--type applies to CSV files only" in refused.output


def test_without_dry_run_one_bad_row_among_good_files_publishes_nothing(tmp_path: Path) -> None:
    good = tmp_path / "fx_rates.csv"
    good.write_text("from_currency,to_currency,rate_date,rate\nUSD,EUR,2025-08-01,0.92\n")
    bad = tmp_path / "transactions.csv"
    bad.write_text("transaction_id,portfolio_id,security_id,transaction_type,transaction_date,quantity,price,"
                   "trade_currency\nT1,P1,S1,BUY,2025-08-01T10:00:00Z,10,5,USD\nT2,P1,S1,BUY,2025-08-01T11:00:00Z,0,5,USD\n")
    result = CliRunner().invoke(cli, ["ingest", "--wait", str(good), str(bad)])  # a connection fails the test
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{bad} row 3: transaction: quantity must be positive for a BUY",
        "2 files: 1 problem in 1 of 3 events; nothing was published",
    ]
