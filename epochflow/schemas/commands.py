"""Commands to the positions role, the single writer of position_state. Other roles never
write that table: they send one of these on the key-scoped command topic, fenced by epoch."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from epochflow.domain.keys import position_key
from epochflow.schemas.events import InvalidEvent, describe
from epochflow.schemas.fields import Id


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True)
    portfolio_id: Id
    security_id: Id
    epoch: int = Field(ge=0)

    @property
    def key(self) -> str:
        return position_key(self.portfolio_id, self.security_id)


class AdvanceWatermark(_Command):
    """Sent by the scheduler once every day up to `to_date` is valued in `epoch`."""

    command: Literal["advance_watermark"] = "advance_watermark"
    to_date: date
    generation: int = Field(ge=0)
    latest_snapshot_date: date | None = None
    business_date: date | None = None  # the scheduler's, in case positions has not seen it yet


class ResetWatermark(_Command):
    """Value again from `to_date + 1`, same epoch. The scheduler sends it with the key's
    epoch; the price/FX fan-out with no epoch (whichever is current), its job's id (a
    re-sent reset has no effect) and the correction's reference offset."""

    command: Literal["reset_watermark"] = "reset_watermark"
    epoch: int | None = Field(default=None, ge=0)
    to_date: date
    reason: str = ""
    job_id: str | None = None
    ref_offset: int = -1


PositionCommand = Annotated[AdvanceWatermark | ResetWatermark, Field(discriminator="command")]
_COMMAND = TypeAdapter(PositionCommand)


def parse_command(raw: bytes) -> AdvanceWatermark | ResetWatermark:
    try:
        return _COMMAND.validate_json(raw)
    except ValidationError as error:
        raise InvalidEvent(describe(error), raw) from None
