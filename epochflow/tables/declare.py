"""How every role declares its tables: changelog-backed, co-partitioned with the key-scoped
topics, raw bytes (values are encoded by the typed store in front of the table)."""

from __future__ import annotations

from datetime import date
from typing import Any

from epochflow.app import app, settings
from epochflow.domain.series import SeriesMonth
from epochflow.tables.journal import JOURNAL_TABLE
from epochflow.tables.reference import Instrument, Months, Portfolio
from epochflow.tables.store import FaustStore


def role_table(name: str):
    return app.Table(
        name,
        default=None,
        key_type=bytes,  # bytes types make Faust use the raw codec
        value_type=bytes,
        partitions=settings.partitions,
    )


_JOURNAL: list[Any] = []


def declared_journal():
    """The role's redo journal if a batch runner declared it (the sink has none), else None."""
    return _JOURNAL[0] if _JOURNAL else None


def journal_table():
    """The role's redo journal (epochflow.tables.journal): one table per app, declared by
    the first batch runner."""
    if not _JOURNAL:
        _JOURNAL.append(role_table(JOURNAL_TABLE))
    return _JOURNAL[0]


def store(name: str, kind: Any) -> FaustStore:
    """A role's table `name` behind a typed store of `kind` values."""
    return FaustStore(role_table(name), kind)


# the parts of a role's reference data, in ReferenceData's argument order
REFERENCE_PARTS: tuple[tuple[str, Any], ...] = (
    ("portfolios", Portfolio),
    ("instruments", Instrument),
    ("series", SeriesMonth),
    ("series_index", Months),
    ("scalars", date),
)


def reference_stores(role: str, *, tags: bool = False) -> tuple[FaustStore, ...]:
    """A role's own copy of the reference data: `<role>_reference_<part>` tables (with
    `tags`, also the price currencies), in ReferenceData's argument order."""
    parts = REFERENCE_PARTS + ((("tags", str),) if tags else ())
    return tuple(store(f"{role}_reference_{part}", kind) for part, kind in parts)
