"""Input validation: clear reasons naming the field."""

from __future__ import annotations

import pytest

from epochflow.schemas.events import InvalidEvent, parse_event

GOOD = {"type": "transaction", "transaction_id": "T1", "portfolio_id": "P", "security_id": "S",
        "transaction_type": "BUY", "transaction_date": "2025-08-01T10:00:00Z", "quantity": "1", "price": "1",
        "gross_amount": "1", "trade_fee": "0", "trade_currency": "USD"}


@pytest.mark.parametrize(
    "change, field",
    [
        pytest.param({"quantity": "abc"}, "quantity", id="not-a-number"),
        pytest.param({"quantity": "-5"}, "negative", id="negative-quantity"),
        pytest.param({"transaction_type": "GIFT"}, "transaction_type", id="unknown-type"),
        pytest.param({"trade_currency": "usd"}, "trade_currency", id="bad-currency"),
        pytest.param({"transaction_date": "yesterday"}, "transaction_date", id="bad-date"),
        pytest.param({"portfolio_id": "A|B"}, "portfolio_id", id="separator-in-id"),
        pytest.param({"type": "teleport"}, "type", id="unknown-event-type"),
    ],
)
def test_invalid_events_name_the_field(change, field) -> None:
    with pytest.raises(InvalidEvent) as error:
        parse_event({**GOOD, **change})
    assert field in error.value.reason


def test_missing_field_is_named() -> None:
    raw = dict(GOOD)
    del raw["security_id"]
    with pytest.raises(InvalidEvent, match="security_id"):
        parse_event(raw)


def test_position_date_is_the_date_part_as_written() -> None:
    event = parse_event({**GOOD, "transaction_date": "2025-08-10T23:30:00-05:00"})
    assert event.transaction_date.date().isoformat() == "2025-08-10"


def test_json_bytes_and_invalid_json() -> None:
    assert parse_event(b'{"type": "business_date", "date": "2025-08-01"}').date.isoformat() == "2025-08-01"
    with pytest.raises(InvalidEvent):
        parse_event(b"{not json")
