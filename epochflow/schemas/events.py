"""Input events, in the scenario format (`shared/acceptance/FORMAT.md`).

Every message that enters epochflow is validated here; an invalid one is rejected with the
field and the reason (CLI, HTTP 422) or, if it reached a topic anyway, dead-lettered.
Nothing is silently changed: unknown fields are refused, amounts are exact decimals (a
JSON float is refused, not rounded), ids and amounts follow `epochflow.schemas.fields`
(what PostgreSQL stores and the read API accepts), signs are checked per transaction type.
"""

from __future__ import annotations

import difflib
from datetime import UTC
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from epochflow.domain.model import CostMethod, TxnType
from epochflow.schemas.fields import Amount, Currency, Day, Id, Text, Timestamp

# a trade needs a positive quantity and price; other types carry the amount in gross_amount
_TRADED = (TxnType.BUY, TxnType.SELL, TxnType.TRANSFER_IN, TxnType.TRANSFER_OUT)
_PRICED = (TxnType.BUY, TxnType.SELL)


class _Event(BaseModel):
    # extra="forbid": a misspelt field ("fee", "quantty") is refused with its name, never
    # ignored; values are taken as written (no stripping: an id with spaces is refused)
    model_config = ConfigDict(frozen=True, extra="forbid")


class PortfolioEvent(_Event):
    type: Literal["portfolio"] = "portfolio"
    portfolio_id: Id
    base_currency: Currency
    open_date: Day | None = None
    cost_basis_method: CostMethod = CostMethod.FIFO


class InstrumentEvent(_Event):
    type: Literal["instrument"] = "instrument"
    security_id: Id
    currency: Currency
    name: Text | None = None
    isin: Text | None = None
    product_type: Text | None = None


class BusinessDateEvent(_Event):
    type: Literal["business_date"] = "business_date"
    date: Day


class TransactionEvent(_Event):
    type: Literal["transaction"] = "transaction"
    transaction_id: Id
    portfolio_id: Id
    security_id: Id
    instrument_id: Id | None = None
    transaction_type: TxnType
    transaction_date: Timestamp
    quantity: Amount = Decimal(0)
    price: Amount = Decimal(0)
    gross_amount: Amount = Decimal(0)
    trade_fee: Amount = Decimal(0)
    trade_currency: Currency
    currency: Currency | None = None

    @field_validator("transaction_date")
    @classmethod
    def _aware(cls, value: Any) -> Any:
        # the offset is kept: the date part as written is the position date (FORMAT.md);
        # ordering compares the instants
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value

    @model_validator(mode="after")
    def _signs(self) -> TransactionEvent:
        """Amounts are magnitudes: the transaction type gives the sign (DESIGN.md's table)."""
        for name in ("quantity", "price", "gross_amount", "trade_fee"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative (the transaction type gives the sign)")
        kind = self.transaction_type
        if kind in _TRADED and self.quantity <= 0:
            raise ValueError(f"quantity must be positive for a {kind.value}")
        if kind in _PRICED and self.price <= 0:
            raise ValueError(f"price must be positive for a {kind.value}")
        return self


class MarketPriceEvent(_Event):
    type: Literal["market_price"] = "market_price"
    security_id: Id
    price_date: Day
    price: Amount
    currency: Currency

    @field_validator("price")
    @classmethod
    def _positive(cls, value: Decimal) -> Decimal:
        if value < 0:
            raise ValueError("price must not be negative")
        return value


class FxRateEvent(_Event):
    type: Literal["fx_rate"] = "fx_rate"
    from_currency: Currency
    to_currency: Currency
    rate_date: Day
    rate: Amount

    @field_validator("rate")
    @classmethod
    def _positive(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("rate must be positive")
        return value


class CheckpointEvent(_Event):
    """Only meaningful to the scenario runner; never published."""

    type: Literal["checkpoint"] = "checkpoint"
    name: Text
    expected: dict[str, Any] = Field(default_factory=dict)
    note: Text | None = None


ReferenceEvent = PortfolioEvent | InstrumentEvent | BusinessDateEvent | MarketPriceEvent | FxRateEvent
InputEvent = Annotated[
    PortfolioEvent | InstrumentEvent | BusinessDateEvent | TransactionEvent | MarketPriceEvent | FxRateEvent | CheckpointEvent,
    Field(discriminator="type"),
]

_INPUT = TypeAdapter(InputEvent)
_REFERENCE = TypeAdapter(Annotated[ReferenceEvent, Field(discriminator="type")])


class InvalidEvent(ValueError):
    """An input event that failed validation; `reason` names the field and the problem."""

    def __init__(self, reason: str, raw: Any = None, problems: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw
        # each problem on its own (`field: reason`); `reason` is them joined by "; "
        self.problems = problems or (reason,)


_FIELDS = {
    model.model_fields["type"].default: tuple(model.model_fields)
    for model in (PortfolioEvent, InstrumentEvent, BusinessDateEvent, TransactionEvent, MarketPriceEvent,
                  FxRateEvent, CheckpointEvent)
}


def _unknown_field(loc: tuple) -> str:
    """The message for a field no model has, with the nearest known field when one is close
    ("fee" -> trade_fee, "quantty" -> quantity)."""
    name = str(loc[-1])
    known = _FIELDS.get(str(loc[0])) if len(loc) > 1 else None
    candidates = known or tuple({field for fields in _FIELDS.values() for field in fields})
    near = nearest_field(name, candidates)
    return "unknown field" + (f" (did you mean {near}?)" if near else "")


def nearest_field(name: str, candidates: tuple[str, ...]) -> str | None:
    """The known field `name` was most likely meant to be ("quantty" -> quantity, "fee" ->
    trade_fee), or None."""
    near = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if not near and "_" not in name:  # "fee" is a part of trade_fee
        near = [field for field in candidates if name in field.split("_")][:1]
    return near[0] if near else None


def describe(error: ValidationError) -> str:
    """Every problem of a failed validation as `field: reason`, joined by "; "."""
    return "; ".join(field_problems(error))


def field_problems(error: ValidationError) -> tuple[str, ...]:
    """Every problem of a failed validation, each as `field: reason`."""
    parts = []
    for item in error.errors():
        # the discriminator tag shows up as a location segment; keep the field name readable
        loc = ".".join(str(p) for p in item["loc"] if not isinstance(p, int)) or "event"
        message = _unknown_field(item["loc"]) if item["type"] == "extra_forbidden" else item["msg"]
        parts.append(f"{loc}: {message.removeprefix('Value error, ')}")
    return tuple(parts)


def parse_event(raw: Any) -> Any:
    """Validate one raw event (dict, JSON str or bytes) into its model, or raise InvalidEvent."""
    try:
        if isinstance(raw, (bytes, str)):
            return _INPUT.validate_json(raw)
        return _INPUT.validate_python(raw)
    except ValidationError as error:
        problems = field_problems(error)
        raise InvalidEvent("; ".join(problems), raw, problems) from None


def parse_reference(raw: bytes) -> ReferenceEvent:
    try:
        return _REFERENCE.validate_json(raw)
    except ValidationError as error:
        raise InvalidEvent(describe(error), raw) from None


def parse_transaction(raw: bytes) -> TransactionEvent:
    try:
        return TransactionEvent.model_validate_json(raw)
    except ValidationError as error:
        raise InvalidEvent(describe(error), raw) from None
