"""Messages between the scheduler and the valuation role."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, ValidationError

from epochflow.domain.keys import position_key
from epochflow.schemas.events import InvalidEvent, describe


class ValuationJob(BaseModel):
    """Value one key on one day in one epoch. `state_version` and `ref_offset` are what the
    scheduler had seen; the valuation role answers NOT_READY until it has seen as much."""

    model_config = ConfigDict(frozen=True)
    portfolio_id: str
    security_id: str
    valuation_date: date
    epoch: int
    job_version: int
    state_version: int = 0
    ref_offset: int = -1

    @property
    def key(self) -> str:
        return position_key(self.portfolio_id, self.security_id)


class Tick(BaseModel):
    """The scheduler's clock, delivered on every partition so work happens in stream context."""

    model_config = ConfigDict(frozen=True)
    type: str = "tick"
    at: float


def parse_job(raw: bytes) -> ValuationJob:
    try:
        return ValuationJob.model_validate_json(raw)
    except ValidationError as error:
        raise InvalidEvent(describe(error), raw) from None
