"""Checking what a request says: every refusal is a 400 naming the parameter."""

from __future__ import annotations

from datetime import date

import pytest

from epochflow.schemas.fields import id_problem
from epochflow.web import params
from epochflow.web.params import ApiError


def refused(call, *args) -> str:
    with pytest.raises(ApiError) as caught:
        call(*args)
    assert caught.value.status == 400
    return caught.value.message


@pytest.mark.parametrize("value", ["P1", "P-1_x.y", "O'Brien", "';DROP--TABLE--position_state;--", "../../etc/passwd",
                                   "a/b", "ü€", "x" * 256])
def test_an_id_may_hold_anything_printable_but_a_space_or_the_key_separator(value: str) -> None:
    assert params.identifier("portfolio_id", value) == value


@pytest.mark.parametrize("value, why", [("", "empty"), ("x" * 257, "longer than 256"), ("a\x00b", "control"),
                                        ("a\nb", "control"), ("\ud800", "unprintable"), ("a\x7f", "control"),
                                        ("a\x01", "control"), ("a b", "space"), ("A|B", "'|'"),
                                        ("a\u200bb", "unprintable"), ("a\u00a0b", "unprintable")])
def test_an_id_with_control_characters_or_too_long_is_refused(value: str, why: str) -> None:
    message = refused(params.identifier, "security_id", value)
    assert "security_id" in message and why in message


def test_dates_are_yyyy_mm_dd_only() -> None:
    assert params.iso_date("as_of", "2026-03-02") == date(2026, 3, 2)
    for value in ("20260302", "2026-W10-1", "2026-3-2", "02/03/2026", "2026-03-02T00:00", " 2026-03-02", "", "'; --"):
        assert "YYYY-MM-DD" in refused(params.iso_date, "as_of", value)
    assert "not a calendar date" in refused(params.iso_date, "as_of", "2026-02-30")


def test_a_date_range_is_inclusive_and_ordered() -> None:
    assert params.date_range({}) == (None, None)
    assert params.date_range({"from": "2026-03-02", "to": "2026-03-02"}) == (date(2026, 3, 2), date(2026, 3, 2))
    assert params.date_range({"to": "2026-03-02"}) == (None, date(2026, 3, 2))
    assert "after" in refused(params.date_range, {"from": "2026-03-03", "to": "2026-03-02"})


def test_paging_bounds() -> None:
    assert params.paging({}) == (100, 0)
    assert params.paging({"limit": "1000", "offset": "5"}) == (1000, 5)
    assert params.paging({"offset": "2147483647"}) == (100, 2**31 - 1)
    for query in ({"limit": "0"}, {"limit": "1001"}, {"limit": "100000"}, {"offset": "-1"}, {"limit": "ten"},
                  {"limit": "1e3"}, {"limit": " 5"}, {"limit": "5_0"}, {"offset": "9" * 40},
                  {"offset": "2147483648"}, {"offset": "999999999999999999"}):
        refused(params.paging, query)


@pytest.mark.parametrize("value", ["2147483648", "9223372036854775807", "999999999999999999", "-1", "-0x1", "1.0"])
def test_an_epoch_is_bounded_by_its_32_bit_column(value: str) -> None:
    assert "epoch" in refused(params.optional_integer, {"epoch": value}, "epoch")


def test_integers_default_to_what_a_32_bit_column_holds() -> None:
    assert params.optional_integer({"epoch": "2147483647"}, "epoch") == 2**31 - 1
    assert params.optional_integer({"epoch": "0"}, "epoch") == 0
    assert params.optional_integer({}, "epoch") is None
    assert "0..2147483647" in refused(params.integer, "epoch", "2147483648")


def test_an_id_is_checked_by_the_rule_ingest_applies() -> None:
    for value in ("P_NUL\x00X", "a\x01", "A|B", "a b", "x" * 257):
        assert id_problem(value) is not None
        refused(params.identifier, "portfolio_id", value)


@pytest.mark.parametrize("value", ["price|S1", "fx|EUR|USD"])
def test_a_subject_is_ids_joined_by_the_key_separator(value: str) -> None:
    assert params.optional_subject({"subject": value}, "subject") == value


@pytest.mark.parametrize("value", ["", "price|", "price|a\x00", "a|b|c|d", "price|a b", "x" * 300])
def test_a_bad_subject_is_refused(value: str) -> None:
    assert "subject" in refused(params.optional_subject, {"subject": value}, "subject")


def test_choices_and_booleans() -> None:
    assert params.choice({"status": "FAILED"}, "status", ("PENDING", "FAILED")) == "FAILED"
    assert params.choice({}, "status", ("PENDING",)) is None
    assert "one of PENDING" in refused(params.choice, {"status": "failed"}, "status", ("PENDING",))
    assert params.boolean({"all": "true"}, "all", False) is True
    assert "true or false" in refused(params.boolean, {"all": "yes"}, "all", False)


def test_a_long_hostile_value_is_cut_short_in_the_message() -> None:
    message = refused(params.iso_date, "as_of", "x" * 10_000)
    assert len(message) < 200
