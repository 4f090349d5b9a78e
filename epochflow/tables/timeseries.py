"""The timeseries role's tables (keyed by portfolio, on the portfolio-changes partitions).

| table | key | value |
|---|---|---|
| timeseries_keys | portfolio\\|security | KeyTrack: current epoch, days with a value |
| timeseries_key_days | portfolio\\|security\\|date | KeyDay: the key's snapshot and cash flows of the day |
| timeseries_days | portfolio\\|date | PortfolioDay: the day's aggregates |
| timeseries_flows | portfolio\\|transaction | Cashflow: the transaction's current cash flow |
| timeseries_marks | barrier\\|token\\|stage\\|pN | results partitions whose barrier mark arrived |
| timeseries_reference_* | see tables.reference | portfolios (base currency), FX rates |
"""

from __future__ import annotations

from epochflow.domain.cashflows import Cashflow
from epochflow.domain.timeseries import KeyDay, KeyTrack, PortfolioDay
from epochflow.tables.declare import reference_stores, store

KEYS = store("timeseries_keys", KeyTrack)
KEY_DAYS = store("timeseries_key_days", KeyDay)
DAYS = store("timeseries_days", PortfolioDay)
FLOWS = store("timeseries_flows", Cashflow)
MARKS = store("timeseries_marks", tuple[int, ...])
REFERENCE = reference_stores("timeseries")
