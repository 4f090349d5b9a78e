"""The scheduler role's tables.

| table | key | value |
|---|---|---|
| schedule_keys | portfolio\\|security | ScheduleKey: epoch, generation, watermark, jobs in flight |
| schedule_index | all\\|pN, active\\|pN, sec\\|SECURITY\\|pN, wait\\|WHAT\\|pN | KeySet: keys on partition N to visit |
| schedule_counters | business_date, ref_offset\\|pN, arrived\\|WHAT\\|pN, processing\\|pN | int |
"""

from __future__ import annotations

from epochflow.domain.scheduling import ScheduleKey
from epochflow.tables.declare import store
from epochflow.tables.index import KeySet

KEYS = store("schedule_keys", ScheduleKey)
INDEX = store("schedule_index", KeySet)
COUNTERS = store("schedule_counters", int)
