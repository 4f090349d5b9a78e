"""Input validation: clear reasons naming the field, and nothing silently changed. Every
rule is checked on both forms an event arrives in: a dict (a file read with json.loads, a
request body) and JSON text (a message on a topic)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from epochflow.bench.workloads import fanout_workload, ingest_workload, replay_workload
from epochflow.demo import data as demo_data
from epochflow.schemas.events import CheckpointEvent, InvalidEvent, parse_event, parse_reference, parse_transaction

GOOD = {"type": "transaction", "transaction_id": "T1", "portfolio_id": "P", "security_id": "S",
        "transaction_type": "BUY", "transaction_date": "2025-08-01T10:00:00Z", "quantity": "1", "price": "1",
        "gross_amount": "1", "trade_fee": "0", "trade_currency": "USD"}
PRICE = {"type": "market_price", "security_id": "S", "price_date": "2025-08-01", "price": "10", "currency": "USD"}
FX = {"type": "fx_rate", "from_currency": "EUR", "to_currency": "USD", "rate_date": "2025-08-01", "rate": "1.1"}
PORTFOLIO = {"type": "portfolio", "portfolio_id": "P", "base_currency": "USD"}
INSTRUMENT = {"type": "instrument", "security_id": "S", "currency": "USD", "name": "Apple Inc."}
CASES_FILE = Path(__file__).resolve().parents[3].parent / "shared" / "acceptance" / "public_cases.json"


def both_forms(raw: dict) -> list:
    """The raw event as a dict and as JSON text (the float test needs the JSON literal)."""
    return [raw, json.dumps(raw)]


def refused(raw: dict) -> list[str]:
    reasons = []
    for form in both_forms(raw):
        with pytest.raises(InvalidEvent) as error:
            parse_event(form)
        reasons.append(error.value.reason)
    return reasons


@pytest.mark.parametrize(
    "base, change, named",
    [
        pytest.param(GOOD, {"quantity": "abc"}, "quantity", id="not-a-number"),
        pytest.param(GOOD, {"quantity": "-5"}, "negative", id="negative-quantity"),
        pytest.param(GOOD, {"transaction_type": "GIFT"}, "transaction_type", id="unknown-type"),
        pytest.param(GOOD, {"trade_currency": "usd"}, "trade_currency", id="bad-currency"),
        pytest.param(GOOD, {"transaction_date": "yesterday"}, "transaction_date", id="bad-date"),
        pytest.param(GOOD, {"transaction_date": 1754042400}, "transaction_date", id="epoch-seconds-as-date"),
        pytest.param(GOOD, {"portfolio_id": "A|B"}, "portfolio_id", id="separator-in-id"),
        pytest.param(GOOD, {"type": "teleport"}, "type", id="unknown-event-type"),
        # ids PostgreSQL refuses, or the read API could never serve back
        pytest.param(GOOD, {"portfolio_id": "P_NUL\u0000X"}, "portfolio_id", id="nul-in-id"),
        pytest.param(GOOD, {"security_id": "S\x01"}, "security_id", id="control-in-id"),
        pytest.param(GOOD, {"transaction_id": "T\u200b"}, "transaction_id", id="invisible-in-id"),
        pytest.param(GOOD, {"transaction_id": "T" * 257}, "transaction_id", id="id-too-long"),
        pytest.param(GOOD, {"portfolio_id": " P"}, "portfolio_id", id="space-in-id"),
        pytest.param(GOOD, {"portfolio_id": ""}, "portfolio_id", id="empty-id"),
        pytest.param(GOOD, {"instrument_id": "I\x00"}, "instrument_id", id="nul-in-instrument-id"),
        pytest.param(PORTFOLIO, {"portfolio_id": "P\n"}, "portfolio_id", id="newline-in-portfolio"),
        pytest.param(INSTRUMENT, {"name": "Apple\x00"}, "name", id="nul-in-name"),
        pytest.param(INSTRUMENT, {"name": "n" * 1001}, "name", id="name-too-long"),
        # amounts PostgreSQL cannot store, or not exactly what was written
        pytest.param(GOOD, {"quantity": "9e999999"}, "quantity", id="exponent-overflow"),
        pytest.param(GOOD, {"quantity": "1e-999999"}, "quantity", id="exponent-underflow"),
        pytest.param(GOOD, {"price": "1000000000000000000"}, "price", id="19-integer-digits"),
        pytest.param(GOOD, {"price": "0.1234567890123456789"}, "price", id="19-decimal-places"),
        pytest.param(GOOD, {"gross_amount": 10**18}, "gross_amount", id="huge-json-integer"),
        pytest.param(GOOD, {"quantity": "NaN"}, "NaN", id="nan"),
        pytest.param(GOOD, {"quantity": "-Infinity"}, "Infinity", id="infinity"),
        pytest.param(GOOD, {"quantity": "1_000"}, "quantity", id="underscore"),
        pytest.param(GOOD, {"quantity": " 1"}, "quantity", id="padded"),
        pytest.param(GOOD, {"quantity": "\u0661"}, "quantity", id="arabic-digit"),
        pytest.param(GOOD, {"quantity": True}, "quantity", id="boolean"),
        pytest.param(GOOD, {"quantity": [1]}, "quantity", id="list"),
        pytest.param(GOOD, {"quantity": 100.123456789012345678}, "float", id="float-is-refused-not-rounded"),
        pytest.param(GOOD, {"price": 100.5}, "float", id="float-price"),
        pytest.param(FX, {"rate": 1.1}, "float", id="float-rate"),
        pytest.param(PRICE, {"price": "9e999999"}, "price", id="price-overflow"),
        # unknown and misspelt fields
        pytest.param(GOOD, {"fee": 5}, "fee: unknown field (did you mean trade_fee?)", id="fee"),
        pytest.param({**GOOD, "transaction_type": "DIVIDEND"}, {"quantty": "1"}, "quantty: unknown field (did you mean "
                     "quantity?)", id="misspelt-quantity"),
        pytest.param(PRICE, {"prize": "1"}, "prize", id="misspelt-price"),
        pytest.param(PORTFOLIO, {"owner": "x"}, "owner", id="unknown-portfolio-field"),
        # signs per transaction type
        pytest.param(GOOD, {"price": "-100"}, "price must not be negative", id="negative-price-on-buy"),
        pytest.param(GOOD, {"price": "0"}, "price must be positive for a BUY", id="zero-price-on-buy"),
        pytest.param({**GOOD, "transaction_type": "SELL"}, {"quantity": "0"}, "quantity must be positive", id="zero-sell"),
        pytest.param({**GOOD, "transaction_type": "DEPOSIT"}, {"gross_amount": "-1"}, "gross_amount", id="negative-deposit"),
        pytest.param(GOOD, {"trade_fee": "-0.01"}, "trade_fee", id="negative-fee"),
        pytest.param({**GOOD, "transaction_type": "DIVIDEND"}, {"price": "-1"}, "price", id="negative-price-dividend"),
        pytest.param(PRICE, {"price": "-1"}, "price", id="negative-market-price"),
        pytest.param(FX, {"rate": "0"}, "rate", id="zero-rate"),
        # dates
        pytest.param(PRICE, {"price_date": "2025-02-30"}, "price_date", id="not-a-calendar-date"),
        pytest.param(PRICE, {"price_date": 20250801}, "price_date", id="date-as-number"),
        pytest.param(PRICE, {"price_date": "2025-08-01T00:00:00"}, "price_date", id="timestamp-as-date"),
    ],
)
def test_invalid_events_name_the_field(base: dict, change: dict, named: str) -> None:
    for reason in refused({**base, **change}):
        assert named in reason


def test_missing_field_is_named() -> None:
    raw = dict(GOOD)
    del raw["security_id"]
    with pytest.raises(InvalidEvent, match="security_id"):
        parse_event(raw)


@pytest.mark.parametrize(
    "change, quantity",
    [
        ({"quantity": 100}, Decimal(100)),  # a JSON integer is exact
        ({"quantity": "100.123456789012345678"}, Decimal("100.123456789012345678")),  # a string is kept exactly
        ({"quantity": "1E+3"}, Decimal(1000)),
        ({"quantity": "0.0000001"}, Decimal("1E-7")),
        ({"quantity": "999999999999999999.999999999999999999"}, Decimal("999999999999999999.999999999999999999")),
        ({"quantity": "+5"}, Decimal(5)),
    ],
)
def test_exact_amounts_are_accepted_as_written(change: dict, quantity: Decimal) -> None:
    for form in both_forms({**GOOD, **change}):
        event = parse_event(form)
        assert event.quantity == quantity
        assert str(event.quantity) == str(quantity)


def test_what_goes_onto_a_topic_comes_back_the_same() -> None:
    """The models' own JSON (what `publish` sends) passes the topic boundary unchanged."""
    event = parse_event({**GOOD, "quantity": "0.0000001", "price": "1E+3"})
    assert parse_transaction(event.model_dump_json().encode()) == event
    price = parse_event(PRICE)
    assert parse_reference(price.model_dump_json().encode()) == price


def test_a_hostile_message_on_a_topic_is_invalid_with_the_reason() -> None:
    with pytest.raises(InvalidEvent, match="portfolio_id: contains control"):
        parse_transaction(json.dumps({**GOOD, "portfolio_id": "P_NUL\u0000X"}).encode())
    with pytest.raises(InvalidEvent, match="quantity: is out of range"):
        parse_transaction(json.dumps({**GOOD, "quantity": "9e999999"}).encode())
    with pytest.raises(InvalidEvent, match="rate: is a JSON number"):
        parse_reference(json.dumps({**FX, "rate": 1.1}).encode())
    with pytest.raises(InvalidEvent):
        parse_reference(b"[" * 10_000 + b"]" * 10_000)


@pytest.mark.parametrize("kind", ["DIVIDEND", "INTEREST", "DEPOSIT", "WITHDRAWAL", "FEE"])
def test_types_that_move_cash_need_no_quantity_or_price(kind: str) -> None:
    raw = {key: value for key, value in GOOD.items() if key not in ("quantity", "price")}
    event = parse_event({**raw, "transaction_type": kind, "gross_amount": "15"})
    assert (event.quantity, event.price) == (0, 0)


def test_a_checkpoint_is_valid_but_not_an_event_to_send() -> None:
    event = parse_event({"type": "checkpoint", "name": "after", "expected": {"positions": []}})
    assert isinstance(event, CheckpointEvent)


def test_position_date_is_the_date_part_as_written() -> None:
    event = parse_event({**GOOD, "transaction_date": "2025-08-10T23:30:00-05:00"})
    assert event.transaction_date.date().isoformat() == "2025-08-10"


def test_json_bytes_and_invalid_json() -> None:
    assert parse_event(b'{"type": "business_date", "date": "2025-08-01"}').date.isoformat() == "2025-08-01"
    with pytest.raises(InvalidEvent):
        parse_event(b"{not json")


@pytest.mark.skipif(not CASES_FILE.exists(), reason="the shared acceptance cases are not here")
def test_every_event_of_the_public_cases_is_valid() -> None:
    cases = json.loads(CASES_FILE.read_text())["cases"]
    events = [event for case in cases for event in case["events"]]
    assert events
    for event in events:
        for form in both_forms(event):
            parse_event(form)


def test_the_demo_and_bench_generators_emit_valid_events() -> None:
    """They build the models directly; what they publish must pass the topic boundary."""
    reference, trades = ingest_workload("B", 40, 10)
    generated = [*reference, *trades, *replay_workload(20)[0], *fanout_workload(5, 10)[0]]
    demo = demo_data.demo_events()
    generated += [*demo, demo_data.price_correction(demo)[0], demo_data.late_trade()]
    for event in generated:
        assert parse_event(event.model_dump_json()) == event
