"""CSV answers of the read routes over HTTP, against a real PostgreSQL holding the shared
book (no broker): the header is the row model's fields, one line per row of the JSON
answer, every value written exactly as JSON writes it; a route without rows is 406."""

from __future__ import annotations  # noqa: I001  (served loads the app before the web modules register routes)

import csv
import io
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.unit.web.served import client, settings
from epochflow.web import api
from epochflow.web.responses import (
    PortfolioPositions,
    PortfolioTransactions,
    PositionHistory,
    PositionSnapshots,
    ReprocessingJobs,
    ValuationJobs,
)

pytestmark = pytest.mark.integration

ROUTES = [
    ("/portfolios/P1/positions/", PortfolioPositions),
    ("/positions/P1/S1/history/", PositionHistory),
    ("/positions/P1/S2/snapshots/", PositionSnapshots),
    ("/valuation-jobs/?portfolio_id=P1", ValuationJobs),
    ("/reprocessing/jobs/", ReprocessingJobs),
    ("/portfolios/P1/transactions/", PortfolioTransactions),
]


@pytest.fixture
async def served(book: AsyncEngine, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    monkeypatch.setattr(api, "settings", settings(database_url=postgres_url))
    monkeypatch.setattr(api, "_engine", None)
    try:
        yield
    finally:
        if api._engine is not None:
            await api._engine.dispose()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@pytest.mark.parametrize(("path", "model"), ROUTES)
@pytest.mark.parametrize("ask", ["query", "accept"])
async def test_a_read_as_csv_is_its_json_rows(served: None, path: str, model, ask: str) -> None:
    async with client(settings()) as http:
        as_json = await (await http.get(path)).json()
        if ask == "query":
            response = await http.get(path + ("&" if "?" in path else "?") + "format=csv")
        else:
            response = await http.get(path, headers={"Accept": "application/json;q=0.9, text/csv"})
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        lines = list(csv.reader(io.StringIO(await response.text())))
    rows = as_json[model.csv_rows]
    assert rows, f"the book has rows for {path}"
    assert lines[0] == model.csv_columns()
    assert len(lines) == 1 + len(rows)
    for line, row in zip(lines[1:], rows):
        assert line == [_cell(row[column]) for column in lines[0]]  # decimals and dates as JSON writes them


async def test_decimals_keep_their_exact_digits(served: None) -> None:
    async with client(settings()) as http:
        text = await (await http.get("/portfolios/P1/transactions/?format=csv&security_id=S1")).text()
    (header, row) = list(csv.reader(io.StringIO(text)))
    by = dict(zip(header, row))
    assert (by["transaction_id"], by["price"], by["gross_amount"], by["trade_fee"]) == ("A", "13.899", "1389.9", "0.00")
    assert (by["transaction_date"], by["oversold"], by["realized_gain_loss"]) == ("2025-08-01T10:00:00Z", "false", "")


async def test_paging_applies_to_csv_and_a_route_without_rows_is_406(served: None) -> None:
    async with client(settings()) as http:
        page = await http.get("/valuation-jobs/?portfolio_id=P1&limit=2&offset=1&format=csv")
        assert len(list(csv.reader(io.StringIO(await page.text())))) == 1 + 2
        refused = await http.get("/portfolios/P1/support/", headers={"Accept": "text/csv"})
        assert refused.status == 406 and "CSV" in (await refused.json())["error"]
        unknown = await http.get("/portfolios/P9/transactions/?format=csv")
        assert unknown.status == 404 and unknown.content_type == "application/json"
