"""The positions step: one event applied to one key's state.

`apply_*` functions are pure: they read buckets through the loader they are given and
return the new state, the buckets and transaction refs to write, and the outputs to send.
Back-dated arrivals bump the epoch and rebuild the key's history under the new epoch in
the same step, so a crash either repeats the whole step or finds it done.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta

from epochflow.domain.cost import FxLookup
from epochflow.domain.fencing import advance_fenced, reset_fenced
from epochflow.domain.history import BucketLoader, Rebuilt, entries_from, find_entry, rebuild
from epochflow.domain.model import (
    Bucket,
    CostContext,
    Flag,
    HistoryEntry,
    KeyStatus,
    PositionState,
    Transaction,
    TxnRef,
    week_of,
)

DAY = timedelta(days=1)
RESET_JOBS_KEPT = 16  # a job re-sends a reset only for keys near its cursor, so a few recent ids suffice


# ---- outputs -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EpochOpened:
    """History before `carry_before` is the same in the new epoch as in the old one."""

    from_epoch: int
    to_epoch: int
    carry_before: date


@dataclass(frozen=True, slots=True)
class HistoryWritten:
    epoch: int
    entries: tuple[tuple[int, HistoryEntry], ...]  # (seq, entry)


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: PositionState


@dataclass(frozen=True, slots=True)
class Dropped:
    """An event fenced off: its epoch is older than the key's (counted, not applied)."""

    reason: str


Output = EpochOpened | HistoryWritten | StateChanged | Dropped


@dataclass(frozen=True, slots=True)
class Step:
    state: PositionState
    buckets: tuple[Bucket, ...] = ()
    refs: tuple[tuple[str, TxnRef], ...] = ()
    outputs: tuple[Output, ...] = ()
    changed: bool = True


@dataclass(frozen=True, slots=True)
class Reference:
    """What the positions role knows of the world when it applies an event."""

    ctx: CostContext | None  # None until the portfolio is known
    fx: FxLookup
    business_date: date | None = None
    missing_portfolio: str | None = None


# ---- detection -----------------------------------------------------------------------

def detect_backdated(state: PositionState, affected: date) -> bool:
    """Back-dated: earlier than the effective completed date (later of watermark and the
    latest snapshot of the current epoch)."""
    completed = state.effective_completed_date
    return completed is not None and affected < completed


# ---- transactions --------------------------------------------------------------------

def apply_transaction(
    state: PositionState,
    txn: Transaction,
    ref: TxnRef | None,
    load: BucketLoader,
    reference: Reference,
) -> Step:
    fingerprint = txn.fingerprint()
    if ref is not None and ref.fingerprint == fingerprint:
        return _resend(state, txn.transaction_id, ref, load)

    affected = txn.date
    remove_week = None
    if ref is not None:  # an amendment replaces the old version wherever it was
        remove_week = ref.week
        old = find_entry(state.weeks, load, ref.week, txn.transaction_id)
        if old is not None:
            affected = min(affected, old[1].txn.date)

    new_state, opened = _open_epoch_if_backdated(state, affected, txn.transaction_id)
    if not opened:
        new_state = _revalue_day_if_completed(new_state, affected)
    start_week = week_of(affected)
    # a new epoch needs every entry from the affected day sent under it: no append then
    rebuilt = _rebuild(new_state, load, start_week, affected, reference, insert=txn,
                       remove_id=txn.transaction_id if ref else None, remove_week=remove_week, may_append=not opened)
    new_state = _after_rebuild(new_state, rebuilt, reference, txn.trade_currency, start_week, affected)
    outputs: list[Output] = []
    if opened:
        outputs.append(EpochOpened(state.epoch, new_state.epoch, affected))
    outputs.append(HistoryWritten(new_state.epoch, rebuilt.emitted))
    outputs.append(StateChanged(new_state))
    return Step(
        new_state,
        rebuilt.buckets,
        ((txn.transaction_id, TxnRef(fingerprint, week_of(txn.date), affected)),),
        tuple(outputs),
    )


def _resend(state: PositionState, transaction_id: str, ref: TxnRef, load: BucketLoader) -> Step:
    """A duplicate changes nothing, but re-sends what the original step sent (idempotent
    downstream), so a crash between the state write and the sends loses nothing."""
    outputs: list[Output] = []
    if state.epoch_trigger == transaction_id and state.epoch_rebuilt_from:
        start = date.fromisoformat(state.epoch_rebuilt_from)
        outputs.append(EpochOpened(state.epoch - 1, state.epoch, start))
        outputs.append(HistoryWritten(state.epoch, tuple(entries_from(state.weeks, load, start))))
    elif ref.emitted_from is not None:
        outputs.append(HistoryWritten(state.epoch, tuple(entries_from(state.weeks, load, ref.emitted_from))))
    else:
        found = find_entry(state.weeks, load, ref.week, transaction_id)
        if found is not None:
            outputs.append(HistoryWritten(state.epoch, (found,)))
    outputs.append(StateChanged(state))
    return Step(state, outputs=tuple(outputs), changed=False)


def _open_epoch_if_backdated(state: PositionState, affected: date, trigger: str) -> tuple[PositionState, bool]:
    if not detect_backdated(state, affected):
        return state, False
    return (
        replace(
            state,
            epoch=state.epoch + 1,
            status=KeyStatus.REPROCESSING,
            # never claim days the old epoch had not completed either
            watermark_date=affected - DAY if state.watermark_date is None else min(affected - DAY, state.watermark_date),
            latest_snapshot_date=None,
            generation=state.generation + 1,
            epoch_trigger=trigger,
            epoch_rebuilt_from=affected.isoformat(),
        ),
        True,
    )


def _revalue_day_if_completed(state: PositionState, affected: date) -> PositionState:
    """A same-day transaction is not back-dated, but the completed day is valued again."""
    completed = state.effective_completed_date
    if completed is None or affected > completed:
        return state
    return _moved_back(state, affected - DAY)


def _moved_back(state: PositionState, to: date) -> PositionState:
    watermark = state.watermark_date if state.watermark_date is None else min(state.watermark_date, to)
    snapshot = state.latest_snapshot_date if state.latest_snapshot_date is None else min(state.latest_snapshot_date, to)
    return replace(
        state,
        watermark_date=watermark,
        latest_snapshot_date=snapshot,
        status=KeyStatus.REPROCESSING,
        generation=state.generation + 1,
    )


def _rebuild(state: PositionState, load: BucketLoader, start_week: str, emit_from: date, reference: Reference, **edit) -> Rebuilt:
    ctx = reference.ctx or CostContext(base_currency="")
    fx = reference.fx if reference.ctx else (lambda *_: None)
    return rebuild(state.weeks, state.holding, load, start_week, emit_from, ctx, fx, **edit)


def _after_rebuild(state: PositionState, rebuilt: Rebuilt, reference: Reference, currency: str | None, start_week: str,
                   changed_from: date) -> PositionState:
    """The key's state after a rebuild whose first changed day is `changed_from`."""
    waiting, missing_from = _waiting_for(rebuilt, state, reference, start_week)
    currencies = set(state.fx_currencies)
    if currency and (reference.ctx is None or currency != reference.ctx.base_currency):
        currencies.add(currency)
    return replace(
        state,
        holding=rebuilt.holding,
        weeks=rebuilt.weeks,
        txn_count=rebuilt.count,
        first_open_date=rebuilt.first_date,
        last_transaction_date=rebuilt.last_date,
        waiting_for=waiting,
        fx_missing_from=missing_from,
        fx_currencies=tuple(sorted(currencies)),
        version=state.version + 1,
        changed_from=changed_from,
    )


def _waiting_for(rebuilt: Rebuilt, state: PositionState, reference: Reference, start_week: str) -> tuple[str, date | None]:
    """What the key's base-currency figures wait for, and from which date."""
    if reference.ctx is None:
        # from the first transaction after this step (an earlier one may just have moved)
        return f"portfolio {state.portfolio_id}", rebuilt.first_date
    earlier = state.fx_missing_from if state.fx_missing_from and week_of(state.fx_missing_from) < start_week else None
    first_missing = next(
        (e for b in rebuilt.buckets for e in b.entries if Flag.FX_MISSING in e.flags),
        None,
    )
    if earlier:
        return state.waiting_for, earlier
    if first_missing is None:
        return "", None
    since = first_missing.txn.date
    return f"fx {first_missing.txn.trade_currency}/{reference.ctx.base_currency} on or before {since.isoformat()}", since


# ---- reference data arriving ---------------------------------------------------------

def recost_from(state: PositionState, since: date | None) -> date | None:
    """Where a key is re-costed from when reference data it depends on changes: the change's
    date (the portfolio's: the first transaction), or earlier where base-currency figures
    already wait for a rate. None: the key has no history yet."""
    start = since or state.first_open_date
    if start is None:
        return None
    return start if state.fx_missing_from is None else min(start, state.fx_missing_from)


def apply_reference_change(state: PositionState, since: date, load: BucketLoader, reference: Reference) -> Step:
    """An FX rate (or the portfolio) arrived or changed: re-cost the key from `since`, in
    the same epoch, and revalue the days it touched."""
    if not state.weeks:
        return Step(state, changed=False)
    first = state.first_open_date or since
    since = max(since, first)
    if state.last_transaction_date is not None and since > state.last_transaction_date and not state.waiting_for:
        return Step(state, changed=False)
    new_state = _revalue_day_if_completed(state, since) if state.effective_completed_date and since <= state.effective_completed_date else state
    start_week = week_of(since)
    rebuilt = _rebuild(new_state, load, start_week, since, reference)
    new_state = _after_rebuild(new_state, rebuilt, reference, None, start_week, since)
    return Step(new_state, rebuilt.buckets, (), (HistoryWritten(new_state.epoch, rebuilt.emitted), StateChanged(new_state)))


# ---- commands from other roles -------------------------------------------------------

def apply_advance(state: PositionState, epoch: int, generation: int, to_date: date,
                  latest_snapshot_date: date | None, business_date: date | None) -> Step:
    """The scheduler's advance: only forward, only for the epoch and reset generation it
    was computed from."""
    fenced = advance_fenced(epoch, generation, state.epoch, state.generation)
    if fenced is not None:
        return Step(state, outputs=(Dropped(fenced),), changed=False)
    watermark = to_date if state.watermark_date is None else max(state.watermark_date, to_date)
    snapshot = latest_snapshot_date
    if state.latest_snapshot_date is not None:
        snapshot = state.latest_snapshot_date if snapshot is None else max(snapshot, state.latest_snapshot_date)
    status = state.status
    if business_date is not None and watermark >= business_date:
        status = KeyStatus.CURRENT
    new_state = replace(state, watermark_date=watermark, latest_snapshot_date=snapshot, status=status,
                        version=state.version + 1, changed_from=None)
    if new_state == replace(state, version=new_state.version):
        return Step(state, changed=False)
    return Step(new_state, outputs=(StateChanged(new_state),))


def apply_reset(state: PositionState, epoch: int | None, to_date: date, job_id: str | None = None,
                ref_floor: int = -1) -> Step:
    """A watermark reset: value again from `to_date + 1`, same epoch.

    From the scheduler (`epoch` given) it moves a watermark that is past `to_date` back.
    From the price/FX fan-out (`job_id` given, `epoch` None: whatever the key's epoch is)
    it also marks the days from `to_date + 1` as changed, so days the scheduler already
    valued but has not advanced past are valued again, and raises the reference offset
    valuation must have read first (`ref_floor`, the correction's offset). A job's second
    delivery of the same reset (after a crash) has no effect."""
    fenced = reset_fenced(epoch, state.epoch)
    if fenced is not None:
        return Step(state, outputs=(Dropped(fenced),), changed=False)
    completed = state.effective_completed_date
    moved = completed is not None and to_date < completed
    # a reset with nothing to do (or seen before) re-sends the key's state: if this one is
    # a re-delivery after a crash, the row the first delivery caused may never have left
    unchanged = Step(state, outputs=(StateChanged(state),), changed=False)
    if job_id is None:
        if not moved:
            return unchanged
        new_state = replace(_moved_back(state, to_date), version=state.version + 1, changed_from=None)
        return Step(new_state, outputs=(StateChanged(new_state),))
    if job_id in state.reset_jobs:
        return unchanged
    new_state = _moved_back(state, to_date) if moved else state
    new_state = replace(new_state, version=state.version + 1, changed_from=to_date + DAY,
                        ref_floor=max(state.ref_floor, ref_floor), reset_jobs=(*state.reset_jobs, job_id)[-RESET_JOBS_KEPT:])
    return Step(new_state, outputs=(StateChanged(new_state),))


def apply_business_date(state: PositionState, business_date: date) -> Step:
    """A key already valued up to a new business date becomes CURRENT."""
    if state.status is KeyStatus.REPROCESSING and state.watermark_date is not None and state.watermark_date >= business_date:
        new_state = replace(state, status=KeyStatus.CURRENT, version=state.version + 1)
        return Step(new_state, outputs=(StateChanged(new_state),))
    return Step(state, changed=False)
