"""JSON or CSV (epochflow/web/formats.py): which one a request asks for, the CSV of a body's
rows (header, one line per row, values exactly as in JSON), and 406 for a route without
rows, before any database is reached."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest

from epochflow.web import formats
from epochflow.web.params import ApiError
from epochflow.web.responses import (
    Body,
    Lineage,
    PortfolioCashflows,
    PortfolioPositions,
    PortfolioTransactions,
    PositionHistory,
    PositionSnapshots,
    ReprocessingJobs,
    ReprocessingTriggers,
    Support,
    ValuationJobs,
)
from tests.unit.web.served import client, settings


@pytest.mark.parametrize(
    ("query", "accept", "expected"),
    [
        ({}, None, "json"),
        ({}, "*/*", "json"),
        ({}, "text/csv", "csv"),
        ({}, "TEXT/CSV; charset=utf-8", "csv"),
        ({}, "application/json, text/csv", "json"),
        ({}, "application/json;q=0.5, text/csv", "csv"),
        ({}, "text/csv;q=0", "json"),
        ({}, "text/csv;q=bad", "json"),
        ({}, "text/html,application/xhtml+xml,*/*;q=0.8", "json"),
        ({"format": "csv"}, "application/json", "csv"),
        ({"format": "json"}, "text/csv", "json"),
    ],
)
def test_the_format_asked_for(query: dict[str, str], accept: str | None, expected: str) -> None:
    assert formats.requested(query, accept) == expected


def test_an_unknown_format_is_a_400_naming_it() -> None:
    with pytest.raises(ApiError, match="format") as refused:
        formats.requested({"format": "xlsx"}, None)
    assert refused.value.status == 400


def test_bodies_with_rows_name_them_and_the_others_are_406() -> None:
    with_rows: list[type[Body]] = [PortfolioPositions, PositionHistory, PositionSnapshots, ValuationJobs,
                                   ReprocessingJobs, ReprocessingTriggers, PortfolioCashflows, PortfolioTransactions]
    for model in with_rows:
        assert formats.csv_body(model) is model and model.csv_columns()
    for model in (Lineage, Support, None):
        with pytest.raises(ApiError) as refused:
            formats.csv_body(model)
        assert refused.value.status == 406


def test_the_csv_of_a_body_has_a_header_and_one_line_per_row_with_exact_values() -> None:
    body = PositionSnapshots.model_validate({
        "portfolio_id": "P1", "security_id": "S1", "epoch": 2, "status": "CURRENT", "reprocessing_status": "CURRENT",
        "watermark_date": None, "from": None, "to": None,
        "snapshots": [
            {"date": date(2026, 3, 2), "quantity": Decimal("100"), "cost_basis": None,
             "cost_basis_local": Decimal("1389.90"), "market_price": Decimal("1E-12"),
             "market_value": Decimal("12345678901234567890.123456789"), "market_value_local": None,
             "unrealized_gain_loss": Decimal("-0.10"), "unrealized_gain_loss_local": None, "fx_rate": Decimal("1"),
             "valuation_status": "VALUED_CURRENT", "price_date": date(2026, 3, 2)},
            {"date": date(2026, 3, 3), "quantity": Decimal("0"), "cost_basis": Decimal("0"),
             "cost_basis_local": Decimal("0"), "market_price": None, "market_value": None, "market_value_local": None,
             "unrealized_gain_loss": None, "unrealized_gain_loss_local": None, "fx_rate": None,
             "valuation_status": "UNVALUED, \"quoted\"", "price_date": None},
        ],
    })
    dumped = body.dump()
    text = formats.rows_csv(PositionSnapshots, dumped)
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == ["date", "quantity", "cost_basis", "cost_basis_local", "market_price", "market_value",
                        "market_value_local", "unrealized_gain_loss", "unrealized_gain_loss_local", "fx_rate",
                        "valuation_status", "price_date"]
    assert len(lines) == 1 + 2
    first = dict(zip(lines[0], lines[1]))
    assert first["market_value"] == dumped["snapshots"][0]["market_value"] == "12345678901234567890.123456789"
    assert (first["market_price"], first["cost_basis_local"], first["cost_basis"]) == ("0.000000000001", "1389.90", "")
    assert (first["date"], first["unrealized_gain_loss"]) == ("2026-03-02", "-0.10")
    assert dict(zip(lines[0], lines[2]))["valuation_status"] == 'UNVALUED, "quoted"'


def test_the_csv_of_no_rows_is_the_header_alone() -> None:
    body = ReprocessingTriggers(triggers=[])
    assert formats.rows_csv(ReprocessingTriggers, body.dump()) == ",".join(ReprocessingTriggers.csv_columns()) + "\r\n"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/portfolios/P1/support/?format=csv", {}),
        ("/positions/P1/S1/lineage/", {"Accept": "text/csv"}),
        ("/health/?format=csv", {}),
        ("/openapi.json?format=csv", {}),
        ("/portfolios/P1/performance/?format=csv", {}),
    ],
)
async def test_a_route_without_rows_answers_406_to_a_csv_request(path: str, headers: dict[str, str]) -> None:
    async with client(settings(database_url="")) as http:
        response = await http.get(path, headers=headers)
        assert response.status == 406, await response.text()
        assert "CSV" in (await response.json())["error"]


async def test_format_is_a_known_parameter_of_every_get_and_is_checked() -> None:
    async with client(settings(database_url="")) as http:
        assert (await http.get("/health/?format=json")).status == 200
        bad = await http.get("/valuation-jobs/?format=xml")
        assert bad.status == 400 and "format" in (await bad.json())["error"]
        # the parameter passes the check; the read then finds no database
        assert (await http.get("/valuation-jobs/?format=csv")).status == 503
