"""How every role declares its tables: changelog-backed, co-partitioned with the key-scoped
topics, raw bytes (values are encoded by the typed store in front of the table)."""

from __future__ import annotations

from epochflow.app import app, settings


def role_table(name: str):
    return app.Table(
        name,
        default=None,
        key_type=bytes,  # bytes types make Faust use the raw codec
        value_type=bytes,
        partitions=settings.partitions,
    )
