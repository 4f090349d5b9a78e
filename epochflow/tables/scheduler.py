"""The scheduler role's tables.

| table | key | value |
|---|---|---|
| schedule_keys | portfolio\\|security | ScheduleKey: epoch, generation, watermark, jobs in flight |
| schedule_index | all\\|pN, active\\|pN, wait\\|WHAT\\|pN | KeySet: keys on partition N to visit |
| schedule_counters | business_date, ref_offset\\|pN, arrived\\|WHAT\\|pN | int |
"""

from __future__ import annotations

from epochflow.domain.scheduling import ScheduleKey
from epochflow.tables.declare import role_table
from epochflow.tables.reference import KeySet
from epochflow.tables.store import FaustStore

keys_table = role_table("schedule_keys")
index_table = role_table("schedule_index")
counters_table = role_table("schedule_counters")

KEYS = FaustStore(keys_table, ScheduleKey)
INDEX = FaustStore(index_table, KeySet)
COUNTERS = FaustStore(counters_table, int)
