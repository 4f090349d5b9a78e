"""The fan-out role's tables.

| table | key | value |
|---|---|---|
| fanout_subjects | price\\|SECURITY\\|pN, fx\\|FROM\\|TO\\|pN | SubjectState: pending trigger, open job |
| fanout_index | holders\\|SUBJECT\\|pN, open\\|pN | KeySet: keys on partition N that hold the subject; subjects with work |
| fanout_reference_* | see tables.reference | business date, instruments, portfolios, prices, FX |
"""

from __future__ import annotations

from datetime import date

from epochflow.domain.fanout import SubjectState
from epochflow.domain.series import SeriesMonth
from epochflow.tables.declare import role_table
from epochflow.tables.reference import Instrument, KeySet, Months, Portfolio
from epochflow.tables.store import FaustStore

subjects_table = role_table("fanout_subjects")
index_table = role_table("fanout_index")
_reference_tables = {name: role_table(f"fanout_reference_{name}") for name in
                     ("portfolios", "instruments", "series", "series_index", "scalars")}

SUBJECTS = FaustStore(subjects_table, SubjectState)
INDEX = FaustStore(index_table, KeySet)
_REFERENCE = (
    FaustStore(_reference_tables["portfolios"], Portfolio),
    FaustStore(_reference_tables["instruments"], Instrument),
    FaustStore(_reference_tables["series"], SeriesMonth),
    FaustStore(_reference_tables["series_index"], Months),
    FaustStore(_reference_tables["scalars"], date),
)


def reference_stores() -> tuple:
    return _REFERENCE
