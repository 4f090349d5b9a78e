"""The positions role's tables (changelog-backed RocksDB) and typed stores over them.

| table | key | value |
|---|---|---|
| position_state | portfolio\\|security | PositionState (epoch, watermark, status, holding, month index) |
| position_history | portfolio\\|security\\|YYYY-MM | Bucket: a month of history with its opening holding |
| position_txn_refs | portfolio\\|security\\|transaction_id | TxnRef: fingerprint and month, for duplicates and amendments |
| position_key_index | fx\\|CCY\\|BASE\\|pN or portfolio\\|ID\\|pN | KeySet: keys on partition N to revisit when that reference data changes |
| positions_reference_* | see tables.reference | reference data, one copy per partition |
"""

from __future__ import annotations

from epochflow.tables.declare import role_table
from epochflow.domain.model import Bucket, PositionState, TxnRef
from epochflow.domain.series import SeriesMonth
from epochflow.tables.reference import Instrument, KeySet, Months, Portfolio, ReferenceData
from epochflow.tables.store import FaustStore
from datetime import date


state_table = role_table("position_state")
history_table = role_table("position_history")
refs_table = role_table("position_txn_refs")
key_index_table = role_table("position_key_index")
portfolio_table = role_table("positions_reference_portfolios")
instrument_table = role_table("positions_reference_instruments")
series_table = role_table("positions_reference_series")
series_index_table = role_table("positions_reference_series_index")
scalar_table = role_table("positions_reference_scalars")


_STORES = (
    FaustStore(state_table, PositionState),
    FaustStore(history_table, Bucket),
    FaustStore(refs_table, TxnRef),
    FaustStore(key_index_table, KeySet),
)
_REFERENCE = (
    FaustStore(portfolio_table, Portfolio),
    FaustStore(instrument_table, Instrument),
    FaustStore(series_table, SeriesMonth),
    FaustStore(series_index_table, Months),
    FaustStore(scalar_table, date),
)


def stores():
    """Typed stores over the tables (state, history, transaction refs, key index); they
    keep decoded values across batches."""
    return _STORES


def reference_data() -> ReferenceData:
    return ReferenceData(*_REFERENCE)
