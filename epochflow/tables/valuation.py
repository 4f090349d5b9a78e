"""The valuation role's tables: its copy of each key's history and its reference data.

| table | key | value |
|---|---|---|
| valuation_keys | portfolio\\|security | CachedKey (epoch, positions state version seen, chunk index) |
| valuation_history | portfolio\\|security\\|chunk | HistoryChunk: 256 history entries (end-of-day lookups) |
| valuation_reference_* | see tables.reference | portfolios, instruments, prices, FX, price currencies |
| valuation_progress | ref_offset\\|pN | reference offset processed on partition N |
"""

from __future__ import annotations

from datetime import date

from epochflow.domain.series import SeriesMonth
from epochflow.domain.valuation import CachedKey, HistoryChunk
from epochflow.tables.declare import role_table
from epochflow.tables.reference import Instrument, Months, Portfolio
from epochflow.tables.store import FaustStore

keys_table = role_table("valuation_keys")
history_table = role_table("valuation_history")
progress_table = role_table("valuation_progress")
_reference_tables = {name: role_table(f"valuation_reference_{name}") for name in
                     ("portfolios", "instruments", "series", "series_index", "scalars", "tags")}

KEYS = FaustStore(keys_table, CachedKey)
HISTORY = FaustStore(history_table, HistoryChunk)
PROGRESS = FaustStore(progress_table, int)
_REFERENCE = (
    FaustStore(_reference_tables["portfolios"], Portfolio),
    FaustStore(_reference_tables["instruments"], Instrument),
    FaustStore(_reference_tables["series"], SeriesMonth),
    FaustStore(_reference_tables["series_index"], Months),
    FaustStore(_reference_tables["scalars"], date),
    FaustStore(_reference_tables["tags"], str),
)


def reference_stores() -> tuple:
    return _REFERENCE
