"""Every key shape is built and read in one place: the shapes, their round trips, and ids
that contain the separator."""

from __future__ import annotations

from datetime import date

import pytest

from epochflow.domain.keys import (
    cost_subject,
    describe_subject,
    fx_subject,
    partition_record,
    portfolio_subject,
    position_key,
    price_currency_tag,
    price_subject,
    record_key,
    record_partition,
    reset_job_id,
    split_position_key,
    subject_kind,
)

SUBJECTS = {
    "price": (price_subject("S1"), "price|S1", ("S1", None, None)),
    "price-id-with-bar": (price_subject("S|1"), "price|S|1", ("S|1", None, None)),
    "fx": (fx_subject("EUR", "USD"), "fx|EUR|USD", (None, "EUR", "USD")),
}


@pytest.mark.parametrize("made,name,described", [pytest.param(*c, id=n) for n, c in SUBJECTS.items()])
def test_subject_names_and_their_description(made, name, described) -> None:
    assert made == name
    assert describe_subject(made) == described


KINDS = {
    "price": (price_subject("S|1"), "price"),
    "fx": (fx_subject("EUR", "USD"), "fx"),
    "portfolio": (portfolio_subject("P1"), "portfolio"),
    "cost": (cost_subject("P1"), "cost"),
}


@pytest.mark.parametrize("subject,kind", [pytest.param(*c, id=n) for n, c in KINDS.items()])
def test_subject_kind(subject, kind) -> None:
    assert subject_kind(subject) == kind


POSITION_KEYS = {
    "plain": ("P1", "S1", "P1|S1"),
    "security-with-bar": ("P1", "S|1", "P1|S|1"),  # splits at the first bar
}


@pytest.mark.parametrize("portfolio_id,security_id,key", [pytest.param(*c, id=n) for n, c in POSITION_KEYS.items()])
def test_position_key_round_trip(portfolio_id, security_id, key) -> None:
    assert position_key(portfolio_id, security_id) == key
    assert split_position_key(key) == (portfolio_id, security_id)


RECORDS = {
    "counter": ((0, "processing"), "processing|p0", 0),
    "index": ((3, "active"), "active|p3", 3),
    "wait-on-a-subject": ((12, "wait", fx_subject("EUR", "USD")), "wait|fx|EUR|USD|p12", 12),
    "holders-of-a-subject-with-bar": ((1, "holders", price_subject("S|p2")), "holders|price|S|p2|p1", 1),
    "subject-record": ((2, price_subject("S1")), "price|S1|p2", 2),
}


@pytest.mark.parametrize("args,name,partition", [pytest.param(*c, id=n) for n, c in RECORDS.items()])
def test_partition_records(args, name, partition) -> None:
    assert partition_record(*args) == name
    assert record_partition(name) == partition


def test_a_keys_records_and_tags() -> None:
    assert record_key("P1|S1", "2025-06-02") == "P1|S1|2025-06-02"
    assert record_key("P1|S1", 3) == "P1|S1|3"
    assert price_currency_tag("S1", date(2025, 6, 2)) == "pricecur|S1|2025-06-02"
    assert reset_job_id(price_subject("S1"), 3, 2) == "price|S1#p3#2"
