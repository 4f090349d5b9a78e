"""The valuation role's tables: its copy of each key's history and its reference data.

| table | key | value |
|---|---|---|
| valuation_keys | portfolio\\|security | CachedKey (epoch, positions state version seen, chunk index) |
| valuation_history | portfolio\\|security\\|chunk | HistoryChunk: 256 history entries (end-of-day lookups) |
| valuation_reference_* | see tables.reference | portfolios, instruments, prices, FX, price currencies |
| valuation_progress | ref_offset\\|pN | reference offset processed on partition N |
"""

from __future__ import annotations

from epochflow.domain.history_copy import CachedKey, HistoryChunk
from epochflow.tables.declare import reference_stores, store

KEYS = store("valuation_keys", CachedKey)
HISTORY = store("valuation_history", HistoryChunk)
PROGRESS = store("valuation_progress", int)
REFERENCE = reference_stores("valuation", tags=True)
