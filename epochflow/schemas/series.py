"""Messages on the portfolio-changes topic: what the timeseries role's forwarder sends its
series step, keyed and partitioned by portfolio id (barrier marks go to every partition).

`version` is the offset of the results message the change was read from: a key's rows
all travel on one results partition, so it orders a key's changes (and a transaction's
cash flows) as their producers emitted them.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Change(BaseModel):
    model_config = ConfigDict(frozen=True)


class SnapshotChange(_Change):
    """A key's snapshot of a day in an epoch; no `quantity`: no position that day."""

    kind: Literal["snapshot"] = "snapshot"
    portfolio_id: str
    security_id: str
    date: date
    epoch: int
    version: int
    quantity: Decimal | None = None
    cost_basis_local: Decimal | None = None
    market_value_local: Decimal | None = None
    market_value: Decimal | None = None
    valuation_status: str = ""


class CarryChange(_Change):
    """The key opened `to_epoch`, keeping its days before `before_date`."""

    kind: Literal["carry"] = "carry"
    portfolio_id: str
    security_id: str
    from_epoch: int
    to_epoch: int
    before_date: date


class CashflowChange(_Change):
    kind: Literal["cashflow"] = "cashflow"
    transaction_id: str
    portfolio_id: str
    security_id: str
    transaction_type: str
    transaction_date: date
    gross_amount: Decimal
    trade_fee: Decimal
    currency: str
    epoch: int
    version: int


class BarrierMark(_Change):
    """A positions-stage barrier read on results partition `source_partition`."""

    kind: Literal["barrier_mark"] = "barrier_mark"
    token: str
    stage: str
    source_partition: int


SeriesChange = Annotated[SnapshotChange | CarryChange | CashflowChange | BarrierMark, Field(discriminator="kind")]
CHANGES = TypeAdapter(list[SeriesChange])


def encode_changes(changes: list) -> bytes:
    return b"[" + b",".join(change.model_dump_json().encode() for change in changes) + b"]"
