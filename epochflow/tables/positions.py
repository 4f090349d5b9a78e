"""The positions role's tables (changelog-backed RocksDB) and typed stores over them.

| table | key | value |
|---|---|---|
| position_state | portfolio\\|security | PositionState (epoch, watermark, status, holding), without its open lots and week index |
| position_book | portfolio\\|security | PositionBook: the key's open lots and week index, written only when they change |
| position_history | portfolio\\|security\\|WEEK | Bucket: an ISO week of history (named by its Monday) with its opening holding |
| position_txn_refs | portfolio\\|security\\|transaction_id | TxnRef: fingerprint and week, for duplicates and amendments |
| position_key_index | fx\\|CCY\\|BASE\\|pN or portfolio\\|ID\\|pN | KeySet: keys on partition N to revisit when that reference data changes |
| positions_reference_* | see tables.reference | reference data, one copy per partition |
"""

from __future__ import annotations

from epochflow.domain.model import Bucket, PositionState, TxnRef
from epochflow.tables.declare import reference_stores, store
from epochflow.tables.index import KeySet
from epochflow.tables.position_state import PositionBook, state_store

STATE = state_store(store("position_state", PositionState), store("position_book", PositionBook))
HISTORY = store("position_history", Bucket)
REFS = store("position_txn_refs", TxnRef)
KEY_INDEX = store("position_key_index", KeySet)
REFERENCE = reference_stores("positions")
