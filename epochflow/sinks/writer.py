"""The sink's writer: one batch of result rows, one PostgreSQL transaction.

Each statement is a single multi-row `INSERT ... SELECT FROM unnest(<one array per
column>) ON CONFLICT ...`: the number of bind parameters does not grow with the batch
(no 32k-parameter ceiling) and the SQL text is the same for every batch, so asyncpg's
prepared-statement cache is hit every time.

Guarantees (at-least-once delivery makes every batch a candidate for redelivery):

* idempotent: writing a batch twice changes nothing. Updates only fire when the stored
  row differs, so a replayed batch does not even touch `updated_at`. A transaction row
  carries the time the positions role emitted it as its `updated_at`: the stored row is
  the last one sent of its highest fence, and a replay ends with the same row however its
  batches fall.
* epoch-aware (`domain.fencing.supersedes`, on each kind's fence columns): a transaction
  row never replaces one of a higher (epoch, version) (the key's state version of the step
  that sent it: an equal epoch and a later step replace it, that is an amendment); a
  position_state row replaces the stored one only when its (epoch, version) is greater or
  equal; a position_history row (keyed by epoch) only when its step's version is; a
  snapshot (keyed by epoch) only when the version of the job it answers is; a valuation job
  row only when its `version` is greater or equal (the scheduler numbers each job's
  updates); the same for the fan-out's reprocessing triggers and jobs (numbered by the
  fan-out). A fence column sent empty (a row from before it existed) counts as -1. The
  rule runs twice from one definition: in Python over the batch (`winners`) and as the
  upsert's WHERE clause against the stored row. So a replay of the results topic never
  takes a row back to an earlier figure, not even for a moment. Barriers keep their
  first `seen_at`.
* order-preserving: the result equals applying the batch's rows one by one in order.
  Rows of one kind are first reduced to one per primary key, keeping the row that would
  have won when applied in order (the last one of the highest (epoch[, version])).
* versioned: every write takes the system-time lock first (`sinks.versions`), so the
  versions its rows open and close carry one system time, ordered with every read's.
* resumable: with `offsets`, each partition's last results message written is stored in
  the batch's transaction (`sink_offsets`), so the sink knows what it wrote whatever its
  consumer committed.
* `JobOutcome` rows travel on the results topic for the scheduler; they are skipped here.
* refused rows isolated: `write_refusing` stores a batch without the rows PostgreSQL
  refuses (see `epochflow.sinks.errors`) and names them; the sink dead-letters them.

The ordering rule. transactions, position_state, valuation jobs and pipeline_barriers do
not depend on each other or on the rest, so each is one statement per batch.
position_history rows, snapshot rows and carry-overs do depend on each other: a carry-over
copies the `from_epoch` history rows and snapshots before its date, so the rows of that
key and epoch that came before it in the batch must be written first, those that came
after it must not be copied, and a carry-over from an epoch that an earlier carry-over
filled must see that copy. Rows of other keys or epochs commute with a carry-over,
including `to_epoch` rows: the copy never overwrites (DO NOTHING) and a `to_epoch` row
overwrites a copied one, so either order ends with the explicit row.

So the batch is split into rounds: round 0 writes rows, then each round n >= 1 runs the
copies of every carry-over of level n (one INSERT ... SELECT per table for all of them)
and writes the rows that had to wait for those copies. A carry-over's level is the
lowest that respects the rules above; rows of a key and epoch go to the round of the
last carry-over from that key and epoch before them. The number of statements grows with
the length of the longest chain of carry-overs of one key in the batch (one epoch bump ->
one extra round), not with the number of rows, keys or carry-overs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Date, Integer, Table, Text, and_, func, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

from epochflow.schemas.results import (
    Barrier,
    CashflowRow,
    HistoryCarryOver,
    JobOutcome,
    PortfolioTimeseriesRow,
    PositionHistoryRow,
    PositionStateRow,
    PositionTimeseriesRow,
    ReprocessingJobRow,
    ReprocessingTriggerRow,
    ResultRow,
    SnapshotRow,
    TransactionRow,
    ValuationJobRow,
)
from epochflow.sinks.errors import ErrorKind, classify, reason, sqlstate
from epochflow.sinks.models import (
    cashflows,
    daily_position_snapshots,
    pipeline_barriers,
    portfolio_timeseries,
    portfolio_valuation_jobs,
    position_history,
    position_state,
    position_timeseries,
    reprocessing_jobs,
    reprocessing_triggers,
    sink_offsets,
    transactions,
)
from epochflow.sinks.schema import create_engine
from epochflow.sinks.statements import (
    SNAPSHOT_FENCE,
    STATE_FENCE,
    TRANSACTION_FENCE,
    VERSION_FENCE,
    differs,
    replaces,
    rowset,
    superseded,
    table_columns,
    unnest,
    winners,
)
from epochflow.sinks.versions import stamp_write

EpochRow = PositionHistoryRow | SnapshotRow
OrderedItem = PositionHistoryRow | SnapshotRow | HistoryCarryOver
KeyEpoch = tuple[str, str, int]


class ResultWriter:
    """Writes batches of `ResultRow`s; share one per process (it holds a connection pool)."""

    def __init__(self, database: str | AsyncEngine, **engine_kwargs: Any) -> None:
        """`database` is a `postgresql://` URL (the writer then owns its engine and
        `close()` disposes of it) or an engine the caller keeps owning."""
        self._owns_engine = isinstance(database, str)
        self.engine = create_engine(database, **engine_kwargs) if isinstance(database, str) else database

    async def close(self) -> None:
        if self._owns_engine:
            await self.engine.dispose()

    async def write(self, rows: Sequence[ResultRow], offsets: Offsets | None = None) -> None:
        """Write the batch atomically: all of it is visible, or (on error) none of it; with
        `offsets`, the last message of each partition it came from, in the same
        transaction (`last_offsets`)."""
        batch = _Batch.of(rows)
        if batch.empty and not offsets:
            return
        async with self.engine.begin() as conn:
            if not batch.empty:
                await stamp_write(conn)
                await batch.execute(conn)
            await _store_offsets(conn, offsets)

    async def write_refusing(self, rows: Sequence[ResultRow], offsets: Offsets | None = None) -> list[Refusal]:
        """Write the batch in one transaction, leaving out the rows PostgreSQL refuses
        (`errors.ErrorKind.REFUSED_ROW`), and return those. The batch is bisected, each part
        under its own savepoint, down to the single rows that fail on their own; the parts
        run in order, so the rest is stored exactly as if the refused rows had never been in
        the batch. Any other error propagates and nothing is written. `offsets` as in
        `write`: the messages of refused rows were handled too (dead-lettered)."""
        async with self.engine.begin() as conn:
            await stamp_write(conn)
            refused = await _write_isolating(conn, list(rows), 0)
            await _store_offsets(conn, offsets)
            return refused

    async def last_offsets(self) -> Offsets:
        """(topic, partition) -> the offset of the last message written of it (`offsets`)."""
        c = sink_offsets.c
        async with self.engine.connect() as conn:
            found = await conn.execute(select(c.topic, c.partition, c.last_offset))
            return {(topic, partition): offset for topic, partition, offset in found}


Offsets = dict[tuple[str, int], int]  # (topic, partition) -> the offset of the batch's last message


async def _store_offsets(conn: AsyncConnection, offsets: Offsets | None) -> None:
    """Set each partition's last written offset: set, not raised, so after a replay from
    an earlier offset (or a broker recreated with its offsets from 0) it follows the
    messages written now."""
    if not offsets:
        return
    stmt = pg_insert(sink_offsets).values(
        [{"topic": topic, "partition": partition, "last_offset": offset}
         for (topic, partition), offset in sorted(offsets.items())]
    )
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=["topic", "partition"],
        set_={"last_offset": stmt.excluded.last_offset, "written_at": func.now()},
    ))


@dataclass(frozen=True, slots=True)
class Refusal:
    """A row PostgreSQL refused: its index in the batch, the row and PostgreSQL's reason."""

    index: int
    row: ResultRow
    reason: str
    sqlstate: str | None


async def _write_isolating(conn: AsyncConnection, rows: list[ResultRow], offset: int) -> list[Refusal]:
    batch = _Batch.of(rows)
    if batch.empty:
        return []
    try:
        async with conn.begin_nested():
            await batch.execute(conn)
        return []
    except Exception as error:
        if classify(error) is not ErrorKind.REFUSED_ROW:
            raise
        if len(rows) == 1:
            return [Refusal(offset, rows[0], reason(error), sqlstate(error))]
    half = len(rows) // 2
    return await _write_isolating(conn, rows[:half], offset) + await _write_isolating(conn, rows[half:], offset + half)


@dataclass
class _Batch:
    """A batch's rows by kind, in the order of the batch within each kind."""

    txs: list[TransactionRow] = field(default_factory=list)
    states: list[PositionStateRow] = field(default_factory=list)
    jobs: list[ValuationJobRow] = field(default_factory=list)
    triggers: list[ReprocessingTriggerRow] = field(default_factory=list)
    reset_jobs: list[ReprocessingJobRow] = field(default_factory=list)
    barriers: list[Barrier] = field(default_factory=list)
    ordered: list[OrderedItem] = field(default_factory=list)
    series: list[Any] = field(default_factory=list)

    @classmethod
    def of(cls, rows: Iterable[ResultRow]) -> _Batch:
        batch = cls()
        for row in rows:
            match row:
                case TransactionRow(updated_at=None):  # sent before rows carried their time
                    batch.txs.append(row.model_copy(update={"updated_at": datetime.now(UTC)}))
                case TransactionRow():
                    batch.txs.append(row)
                case PositionStateRow():
                    batch.states.append(row)
                case ValuationJobRow():
                    batch.jobs.append(row)
                case ReprocessingTriggerRow():
                    batch.triggers.append(row)
                case ReprocessingJobRow():
                    batch.reset_jobs.append(row)
                case Barrier():
                    batch.barriers.append(row)
                case CashflowRow() | PositionTimeseriesRow() | PortfolioTimeseriesRow():
                    batch.series.append(row)
                case PositionHistoryRow() | SnapshotRow() | HistoryCarryOver():
                    batch.ordered.append(row)
                case JobOutcome():
                    continue  # a message for the scheduler, not for the database
                case _:
                    raise TypeError(f"not a result row: {type(row).__name__}")
        return batch

    @property
    def empty(self) -> bool:
        return not (self.txs or self.states or self.jobs or self.triggers or self.reset_jobs or self.barriers
                    or self.ordered or self.series)

    async def execute(self, conn: AsyncConnection) -> None:
        if self.txs:
            await conn.execute(_transactions_upsert(self.txs))
        if self.ordered:
            await _write_ordered(conn, self.ordered)
        if self.states:
            await conn.execute(_position_state_upsert(self.states))
        if self.jobs:
            await conn.execute(_versioned_upsert(portfolio_valuation_jobs, JOB_COLUMNS, self.jobs))
        if self.triggers:
            await conn.execute(_versioned_upsert(reprocessing_triggers, TRIGGER_COLUMNS, self.triggers))
        if self.reset_jobs:
            await conn.execute(_versioned_upsert(reprocessing_jobs, RESET_JOB_COLUMNS, self.reset_jobs))
        for kind, table, columns, fence in SERIES_TABLES:  # cash flows and time series
            rows = [row for row in self.series if row.kind == kind]
            if rows:
                await conn.execute(_versioned_upsert(table, columns, rows, fence))
        # Last, so a barrier never becomes visible before what preceded it (the whole
        # batch commits at once anyway; this keeps it true if that ever changes).
        if self.barriers:
            await conn.execute(_barriers_insert(self.barriers))


# -- per-kind statements ------------------------------------------------------------------


def _transactions_upsert(rows: list[TransactionRow]) -> Executable:
    kept = winners(rows, key=lambda r: r.transaction_id, wins=replaces(TRANSACTION_FENCE))
    stmt = pg_insert(transactions).from_select(
        TRANSACTION_COLUMNS, unnest(transactions, TRANSACTION_COLUMNS, kept)
    )
    # updated_at is the row's own emission time, not now(), and compared like the rest: the
    # stored row is the last one sent of the highest (epoch, version), however the batches
    # of a replay fall
    content = [c for c in TRANSACTION_COLUMNS if c != "transaction_id"]
    return stmt.on_conflict_do_update(
        index_elements=["transaction_id"],
        set_={c: stmt.excluded[c] for c in content},
        where=and_(
            superseded(transactions, stmt.excluded, TRANSACTION_FENCE),
            differs(transactions, stmt.excluded, content),
        ),
    )


def _history_upsert(rows: list[PositionHistoryRow]) -> Executable:
    kept = winners(rows, key=_history_key, wins=replaces(VERSION_FENCE))
    stmt = pg_insert(position_history).from_select(
        HISTORY_COLUMNS, unnest(position_history, HISTORY_COLUMNS, kept)
    )
    content = [c for c in HISTORY_COLUMNS if c not in HISTORY_PK]
    return stmt.on_conflict_do_update(
        index_elements=HISTORY_PK,
        set_={c: stmt.excluded[c] for c in content},
        where=and_(
            superseded(position_history, stmt.excluded, VERSION_FENCE),
            differs(position_history, stmt.excluded, content),
        ),
    )


def _snapshots_upsert(rows: list[SnapshotRow]) -> Executable:
    """Same key, date and epoch: the answer to the same or a later job replaces the stored one."""
    kept = winners(rows, key=_snapshot_key, wins=replaces(SNAPSHOT_FENCE))
    stmt = pg_insert(daily_position_snapshots).from_select(
        SNAPSHOT_COLUMNS, unnest(daily_position_snapshots, SNAPSHOT_COLUMNS, kept)
    )
    content = [c for c in SNAPSHOT_COLUMNS if c not in SNAPSHOT_PK]
    return stmt.on_conflict_do_update(
        index_elements=SNAPSHOT_PK,
        set_={**{c: stmt.excluded[c] for c in content}, "updated_at": func.now()},
        where=and_(
            superseded(daily_position_snapshots, stmt.excluded, SNAPSHOT_FENCE),
            differs(daily_position_snapshots, stmt.excluded, content),
        ),
    )


def _carry_copy(table: Table, names: list[str], date_column: str, carries: list[HistoryCarryOver]) -> Executable:
    """Every carry-over of one round at once: copy each one's `from_epoch` rows dated
    before its `before_date` into its `to_epoch`, never overwriting a row already there."""
    carry = rowset(
        "carry",
        [
            ("portfolio_id", Text(), [c.portfolio_id for c in carries]),
            ("security_id", Text(), [c.security_id for c in carries]),
            ("from_epoch", Integer(), [c.from_epoch for c in carries]),
            ("to_epoch", Integer(), [c.to_epoch for c in carries]),
            ("before_date", Date(), [c.before_date for c in carries]),
        ],
    )
    t = table.c
    pk = [col.name for col in table.primary_key.columns]
    copied = (
        select(*(_carried(name, t, carry) for name in names))
        .select_from(
            table.join(
                carry,
                and_(
                    t.portfolio_id == carry.c.portfolio_id,
                    t.security_id == carry.c.security_id,
                    t.epoch == carry.c.from_epoch,
                    t[date_column] < carry.c.before_date,
                ),
            )
        )
        # the same lock order as the upserts (sorted by key)
        .order_by(*(carry.c.to_epoch if name == "epoch" else t[name] for name in pk))
    )
    return pg_insert(table).from_select(names, copied).on_conflict_do_nothing(index_elements=pk)


def _carried(name: str, t: Any, carry: Any) -> Any:
    """A column of a carried-over row: the new epoch; no job version (the new epoch's jobs
    number their answers afresh); the rest as it was."""
    if name == "epoch":
        return carry.c.to_epoch.label(name)
    if name == "job_version":
        return literal(None, BigInteger()).label(name)
    return t[name]


def _position_state_upsert(rows: list[PositionStateRow]) -> Executable:
    kept = winners(rows, key=lambda r: (r.portfolio_id, r.security_id), wins=replaces(STATE_FENCE))
    stmt = pg_insert(position_state).from_select(STATE_COLUMNS, unnest(position_state, STATE_COLUMNS, kept))
    content = [c for c in STATE_COLUMNS if c not in ("portfolio_id", "security_id")]
    incoming = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["portfolio_id", "security_id"],
        set_={c: incoming[c] for c in content},
        where=and_(superseded(position_state, incoming, STATE_FENCE), differs(position_state, incoming, content)),
    )


def _versioned_upsert(table: Table, columns: list[str], rows: Sequence[Any],
                      fence: tuple[str, ...] = VERSION_FENCE) -> Executable:
    """Rows of a single writer that numbers its updates (valuation jobs, the fan-out's
    triggers and jobs; the timeseries role's rows, by epoch first where they have one): a
    row replaces the stored one only when its fence is greater or equal."""
    pk = [c.name for c in table.primary_key.columns]
    kept = winners(rows, key=lambda row: tuple(getattr(row, n) for n in pk), wins=replaces(fence))
    stmt = pg_insert(table).from_select(columns, unnest(table, columns, kept))
    content = [c for c in columns if c not in pk]
    return stmt.on_conflict_do_update(
        index_elements=pk,
        set_={c: stmt.excluded[c] for c in content},
        where=and_(superseded(table, stmt.excluded, fence), differs(table, stmt.excluded, content)),
    )


def _barriers_insert(rows: list[Barrier]) -> Executable:
    kept = winners(rows, key=lambda r: (r.token, r.stage, r.partition), wins=lambda new, old: False)
    return (
        pg_insert(pipeline_barriers)
        .from_select(BARRIER_COLUMNS, unnest(pipeline_barriers, BARRIER_COLUMNS, kept))
        .on_conflict_do_nothing(index_elements=BARRIER_COLUMNS)
    )


# -- history, snapshots and carry-overs, in rounds ----------------------------------------


@dataclass
class _Round:
    carries: list[HistoryCarryOver] = field(default_factory=list)  # run first
    history: list[PositionHistoryRow] = field(default_factory=list)  # then these
    snapshots: list[SnapshotRow] = field(default_factory=list)


def _rounds(items: Iterable[OrderedItem]) -> list[_Round]:
    """Assign every row and carry-over to a round (see the module docstring).

    A carry-over of level n runs at the start of round n. It must see the rows of its
    source (key, epoch) that came before it (level > their round) and the copies into its
    source made before it (level > theirs); it must keep "the first copy wins" against
    an earlier carry-over into the same target (level > theirs) and must not be seen by
    an earlier carry-over from its target (level >= theirs: the copies of one round run as
    one statement per table, which reads the table as it was before that statement). A
    row goes to the round of the latest carry-over from its (key, epoch) before it: after
    that copy, and before any later one.
    """
    carried_from: dict[KeyEpoch, int] = {}  # highest level of a carry-over from (key, epoch)
    carried_into: dict[KeyEpoch, int] = {}  # highest level of a carry-over into (key, epoch)
    written: dict[KeyEpoch, int] = {}  # highest round of a row of (key, epoch)
    rounds: list[_Round] = [_Round()]
    for item in items:
        if isinstance(item, HistoryCarryOver):
            source = (item.portfolio_id, item.security_id, item.from_epoch)
            target = (item.portfolio_id, item.security_id, item.to_epoch)
            level = max(
                1,
                written.get(source, -1) + 1,
                carried_into.get(source, 0) + 1,
                carried_into.get(target, 0) + 1,
                carried_from.get(target, 0),
            )
            carried_from[source] = max(carried_from.get(source, 0), level)
            carried_into[target] = max(carried_into.get(target, 0), level)
            while len(rounds) <= level:
                rounds.append(_Round())
            rounds[level].carries.append(item)
            continue
        ke = (item.portfolio_id, item.security_id, item.epoch)
        at = carried_from.get(ke, 0)
        written[ke] = max(written.get(ke, -1), at)
        if isinstance(item, PositionHistoryRow):
            rounds[at].history.append(item)
        else:
            rounds[at].snapshots.append(item)
    return rounds


async def _write_ordered(conn: AsyncConnection, items: list[OrderedItem]) -> None:
    for round_ in _rounds(items):
        if round_.carries:
            await conn.execute(_carry_copy(position_history, HISTORY_COLUMNS, "position_date", round_.carries))
            await conn.execute(_carry_copy(daily_position_snapshots, SNAPSHOT_COLUMNS, "date", round_.carries))
        if round_.history:
            await conn.execute(_history_upsert(round_.history))
        if round_.snapshots:
            await conn.execute(_snapshots_upsert(round_.snapshots))


# -- helpers ------------------------------------------------------------------------------


TRANSACTION_COLUMNS = table_columns(transactions, TransactionRow)
HISTORY_COLUMNS = table_columns(position_history, PositionHistoryRow)
# txn_count and changed_from are for the scheduler and the valuation cache, not stored
STATE_COLUMNS = table_columns(position_state, PositionStateRow, not_stored=("txn_count", "changed_from", "ref_floor"))
SNAPSHOT_COLUMNS = table_columns(daily_position_snapshots, SnapshotRow)
JOB_COLUMNS = table_columns(portfolio_valuation_jobs, ValuationJobRow)
TRIGGER_COLUMNS = table_columns(reprocessing_triggers, ReprocessingTriggerRow)
RESET_JOB_COLUMNS = table_columns(reprocessing_jobs, ReprocessingJobRow)
BARRIER_COLUMNS = table_columns(pipeline_barriers, Barrier)
# the timeseries role's rows: kind, table, columns, fence
SERIES_TABLES = (
    ("cashflow", cashflows, table_columns(cashflows, CashflowRow), STATE_FENCE),
    ("position_timeseries", position_timeseries, table_columns(position_timeseries, PositionTimeseriesRow), STATE_FENCE),
    ("portfolio_timeseries", portfolio_timeseries, table_columns(portfolio_timeseries, PortfolioTimeseriesRow),
     VERSION_FENCE),
)
HISTORY_PK = [c.name for c in position_history.primary_key.columns]
SNAPSHOT_PK = [c.name for c in daily_position_snapshots.primary_key.columns]


def _history_key(row: PositionHistoryRow) -> tuple[str, str, int, str]:
    return (row.portfolio_id, row.security_id, row.epoch, row.transaction_id)


def _snapshot_key(row: SnapshotRow) -> tuple[Any, ...]:
    return (row.portfolio_id, row.security_id, row.date, row.epoch)
