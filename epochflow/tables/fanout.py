"""The fan-out role's tables.

| table | key | value |
|---|---|---|
| fanout_subjects | price\\|SECURITY\\|pN, fx\\|FROM\\|TO\\|pN | SubjectState: pending trigger, open job |
| fanout_index | holders\\|SUBJECT\\|pN, open\\|pN | KeySet: keys on partition N that hold the subject; subjects with work |
| fanout_reference_* | see tables.reference | business date, instruments, portfolios, prices, FX |
"""

from __future__ import annotations

from epochflow.domain.fanout import SubjectState
from epochflow.tables.declare import reference_stores, store
from epochflow.tables.index import KeySet

SUBJECTS = store("fanout_subjects", SubjectState)
INDEX = store("fanout_index", KeySet)
REFERENCE = reference_stores("fanout")
