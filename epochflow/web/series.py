"""The time-series routes: a portfolio's daily series and performance, a key's daily series,
a portfolio's cash flows (reads of epochflow.sinks.reads.series)."""

from __future__ import annotations

from functools import cache
from importlib import resources

from epochflow.sinks.reads.series import performance, portfolio_cashflows, portfolio_series, position_series
from epochflow.web import params
from epochflow.web.access import Access
from epochflow.web.api import _FROM, _TO, _UNKNOWN_KEY, _UNKNOWN_PORTFOLIO, AS_AT, at_system_time, database, key_ids
from epochflow.web.params import ApiError
from epochflow.web.responses import Performance as PerformanceBody
from epochflow.web.responses import PortfolioCashflows, PortfolioSeries, PositionSeries
from epochflow.web.routes import ApiView, Operation, route


def _found(body: dict | None, what: str) -> dict:
    if body is None:
        raise ApiError(404, f"no {what}")
    return body


@route(
    "/portfolios/{portfolio_id}/timeseries/",
    tag="timeseries",
    get=Operation(
        "A portfolio's daily time series in its base currency",
        Access.READ,
        PortfolioSeries,
        description=(
            "One row per day: beginning and end of day market value, portfolio cash flows by timing, fees, "
            "daily_return, valuation_status (INCOMPLETE with keys_unvalued when a key held that day has no "
            "valued snapshot) and the cumulative time-weighted return from the first day shown. Each key "
            "contributes its current epoch only; `reprocessing_status` is IN_PROGRESS while a key of the "
            "portfolio is being rebuilt."
        ),
        query=(_FROM, _TO, AS_AT),
        errors=_UNKNOWN_PORTFOLIO,
        reads_database=True,
    ),
)
class PortfolioSeriesView(ApiView):
    @at_system_time
    async def get(self, request, portfolio_id: str):
        portfolio_id, _ = key_ids(portfolio_id)
        date_from, date_to = params.date_range(request.query)
        body = _found(await portfolio_series(database(), portfolio_id, date_from, date_to), f"portfolio {portfolio_id!r}")
        return self.json(PortfolioSeries.model_validate(body).dump())


@route(
    "/portfolios/{portfolio_id}/performance/",
    tag="timeseries",
    get=Operation(
        "A portfolio's time-weighted return over a period",
        Access.READ,
        PerformanceBody,
        description=(
            "The product of (1 + daily_return) over the period's days, minus 1, rounded half-even to 10 "
            "places; null when a day of the period has a null return or is INCOMPLETE, and those days are "
            "listed in `null_days`."
        ),
        query=(_FROM, _TO, AS_AT),
        errors=_UNKNOWN_PORTFOLIO,
        reads_database=True,
    ),
)
class PerformanceView(ApiView):
    @at_system_time
    async def get(self, request, portfolio_id: str):
        portfolio_id, _ = key_ids(portfolio_id)
        date_from, date_to = params.date_range(request.query)
        body = _found(await performance(database(), portfolio_id, date_from, date_to), f"portfolio {portfolio_id!r}")
        return self.json(PerformanceBody.model_validate(body).dump())


@route(
    "/positions/{portfolio_id}/{security_id}/timeseries/",
    tag="timeseries",
    get=Operation(
        "A key's daily time series in its current epoch",
        Access.READ,
        PositionSeries,
        description=(
            "One row per daily snapshot, in the instrument's currency: beginning and end of day market value, "
            "quantity, average unit cost, and the key's cash flows of the day by timing (position flows and "
            "portfolio flows)."
        ),
        query=(_FROM, _TO, AS_AT),
        errors=_UNKNOWN_KEY,
        reads_database=True,
    ),
)
class PositionSeriesView(ApiView):
    @at_system_time
    async def get(self, request, portfolio_id: str, security_id: str):
        portfolio_id, security_id = key_ids(portfolio_id, security_id)
        date_from, date_to = params.date_range(request.query)
        body = _found(await position_series(database(), portfolio_id, security_id, date_from, date_to),
                      f"position {portfolio_id!r} / {security_id!r}")
        return self.json(PositionSeries.model_validate(body).dump())


@route(
    "/portfolios/{portfolio_id}/cashflows/",
    tag="timeseries",
    get=Operation(
        "A portfolio's cash flows",
        Access.READ,
        PortfolioCashflows,
        description="One per transaction (its current version), by date, in the transaction's currency.",
        query=(_FROM, _TO, AS_AT),
        errors=_UNKNOWN_PORTFOLIO,
        reads_database=True,
    ),
)
class PortfolioCashflowsView(ApiView):
    @at_system_time
    async def get(self, request, portfolio_id: str):
        portfolio_id, _ = key_ids(portfolio_id)
        date_from, date_to = params.date_range(request.query)
        body = _found(await portfolio_cashflows(database(), portfolio_id, date_from, date_to),
                      f"portfolio {portfolio_id!r}")
        return self.json(PortfolioCashflows.model_validate(body).dump())


@cache
def page_html() -> str:
    return resources.files("epochflow.web").joinpath("portfolio_page.html").read_text(encoding="utf-8")


@route(
    "/portfolios/{portfolio_id}/page/",
    tag="timeseries",
    get=Operation(
        "A page plotting a portfolio's value and cumulative return over time",
        Access.READ,
        None,
        content_type="text/html",
        description=(
            "An HTML page that reads the portfolio's time series (`from`/`to` passed on) and draws the end of "
            "day market value and the cumulative time-weighted return, the days being rebuilt shaded and the "
            "INCOMPLETE days marked."
        ),
        query=(_FROM, _TO),
    ),
)
class PortfolioPage(ApiView):
    async def get(self, request, portfolio_id: str):
        key_ids(portfolio_id)
        params.date_range(request.query)
        return self.html(page_html(), headers={"Cache-Control": "no-store"})
