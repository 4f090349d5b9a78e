"""`evolve` is `dataclasses.replace` for the domain's records: the same copies, for the
records it may be used on (no `__post_init__`, no `init=False` fields)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from datetime import date
from decimal import Decimal

import pytest

import epochflow.domain
from epochflow.domain.evolve import evolve
from epochflow.domain.model import Bucket, Holding, KeyStatus, Lot, PositionState


def domain_dataclasses() -> list[type]:
    found = []
    for module in pkgutil.iter_modules(epochflow.domain.__path__):
        loaded = importlib.import_module(f"epochflow.domain.{module.name}")
        found += [c for _, c in inspect.getmembers(loaded, inspect.isclass)
                  if dataclasses.is_dataclass(c) and c.__module__ == loaded.__name__]
    return found


def test_every_domain_record_can_be_evolved() -> None:
    records = domain_dataclasses()
    assert PositionState in records and len(records) > 10
    for record in records:
        assert not hasattr(record, "__post_init__"), record
        assert all(f.init for f in dataclasses.fields(record)), record


STATE = PositionState(
    portfolio_id="P1", security_id="S1", epoch=2, status=KeyStatus.REPROCESSING, watermark_date=date(2025, 3, 1),
    generation=4, version=9, holding=Holding(Decimal(5), Decimal(50), Decimal(55), (Lot(Decimal(5), Decimal(50), Decimal(55), 3),)),
    weeks=(("2025-W09", 4),), txn_count=4, reset_jobs=("j1",),
)


@pytest.mark.parametrize("changes", [
    {},
    {"version": 10},
    {"status": KeyStatus.CURRENT, "watermark_date": None, "changed_from": date(2025, 2, 1)},
    {"holding": Holding(), "weeks": (), "txn_count": 0, "fx_currencies": ("EUR",)},
])
def test_evolve_makes_the_copy_replace_makes(changes) -> None:
    copy = evolve(STATE, **changes)
    assert copy == dataclasses.replace(STATE, **changes)
    assert type(copy) is PositionState and copy is not STATE
    assert STATE.version == 9  # the original is unchanged


def test_evolve_on_records_of_every_size() -> None:
    lot = Lot(Decimal(1), Decimal(2), None)
    assert evolve(lot, origin=7) == Lot(Decimal(1), Decimal(2), None, 7)
    bucket = Bucket("2025-W09", Holding())
    assert evolve(bucket, lots_from=3) == dataclasses.replace(bucket, lots_from=3)


def test_evolve_refuses_what_is_not_a_field() -> None:
    with pytest.raises(TypeError, match="no field"):
        evolve(STATE, verison=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        STATE.version = 1  # type: ignore[misc]


def test_evolve_on_a_record_of_one_field() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class One:
        value: int

    assert evolve(One(1), value=2) == One(2)
    assert evolve(One(1)) == One(1)
