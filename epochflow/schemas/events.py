"""Input events, in the scenario format (`shared/acceptance/FORMAT.md`).

Every message that enters epochflow is validated here; an invalid one is rejected with the
field and the reason (CLI, HTTP 422) or, if it reached a topic anyway, dead-lettered.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

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

Money = Annotated[Decimal, Field(allow_inf_nan=False)]
Id = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^|\s]+$")]
Currency = Annotated[str, Field(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)


class PortfolioEvent(_Event):
    type: Literal["portfolio"] = "portfolio"
    portfolio_id: Id
    base_currency: Currency
    open_date: date | None = None
    cost_basis_method: CostMethod = CostMethod.FIFO


class InstrumentEvent(_Event):
    type: Literal["instrument"] = "instrument"
    security_id: Id
    currency: Currency
    name: str | None = None
    isin: str | None = None
    product_type: str | None = None


class BusinessDateEvent(_Event):
    type: Literal["business_date"] = "business_date"
    date: date


class TransactionEvent(_Event):
    type: Literal["transaction"] = "transaction"
    transaction_id: Id
    portfolio_id: Id
    security_id: Id
    instrument_id: str | None = None
    transaction_type: TxnType
    transaction_date: datetime
    quantity: Money = Decimal(0)
    price: Money = Decimal(0)
    gross_amount: Money = Decimal(0)
    trade_fee: Money = Decimal(0)
    trade_currency: Currency
    currency: Currency | None = None

    @field_validator("transaction_date")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        # the offset is kept: the date part as written is the position date (FORMAT.md);
        # ordering compares the instants
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value

    @model_validator(mode="after")
    def _amounts(self) -> "TransactionEvent":
        for name in ("quantity", "gross_amount", "trade_fee"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative (the transaction type gives the sign)")
        if self.transaction_type in (TxnType.BUY, TxnType.SELL, TxnType.TRANSFER_IN, TxnType.TRANSFER_OUT):
            if self.quantity <= 0:
                raise ValueError(f"quantity must be positive for a {self.transaction_type.value}")
        return self


class MarketPriceEvent(_Event):
    type: Literal["market_price"] = "market_price"
    security_id: Id
    price_date: date
    price: Money
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
    rate_date: date
    rate: Money

    @field_validator("rate")
    @classmethod
    def _positive(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("rate must be positive")
        return value


class CheckpointEvent(_Event):
    """Only meaningful to the scenario runner; never published."""

    type: Literal["checkpoint"] = "checkpoint"
    name: str
    expected: dict[str, Any] = Field(default_factory=dict)
    note: str | None = None


ReferenceEvent = Union[PortfolioEvent, InstrumentEvent, BusinessDateEvent, MarketPriceEvent, FxRateEvent]
InputEvent = Annotated[
    Union[
        PortfolioEvent,
        InstrumentEvent,
        BusinessDateEvent,
        TransactionEvent,
        MarketPriceEvent,
        FxRateEvent,
        CheckpointEvent,
    ],
    Field(discriminator="type"),
]

_INPUT = TypeAdapter(InputEvent)
_REFERENCE = TypeAdapter(Annotated[ReferenceEvent, Field(discriminator="type")])


class InvalidEvent(ValueError):
    """An input event that failed validation; `reason` names the field and the problem."""

    def __init__(self, reason: str, raw: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


def describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"] if not isinstance(p, int)) or "event"
        # the discriminator tag shows up as a location segment; keep the field name readable
        parts.append(f"{loc}: {item['msg']}")
    return "; ".join(parts)


def parse_event(raw: Any) -> Any:
    """Validate one raw event (dict, JSON str or bytes) into its model, or raise InvalidEvent."""
    try:
        if isinstance(raw, (bytes, str)):
            return _INPUT.validate_json(raw)
        return _INPUT.validate_python(raw)
    except ValidationError as error:
        raise InvalidEvent(describe(error), raw) from None


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
