"""The timeseries role over typed stores. No Faust here; the rules are in
`domain.cashflows`, `domain.timeseries` and `domain.returns`.

Two steps:

* `forward` (timeseries.forward, on the results topic, keyed partitions): the positions
  role's transaction rows become cash-flow changes, its carry-overs epoch changes, the
  valuation role's snapshots (and days with no position) snapshot changes; they go to the
  portfolio-changes topic, on their portfolio's partition, in one message per portfolio.
  A positions barrier goes to every partition as a mark.
* `SeriesHandler.on_changes` (timeseries.apply, on portfolio-changes): the changes applied
  to the portfolio's series as deltas; the rows of what changed go to the results topic
  (for the sink), numbered by the offset of the message that changed them. Once a partition has seen a barrier's mark from
  every results partition, its barrier goes on (everything before it is applied).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from epochflow import metrics
from epochflow.agents.messages import Message
from epochflow.agents.results_feed import decode_rows
from epochflow.domain.cashflows import Cashflow, cashflow_of
from epochflow.domain.keys import partition_record
from epochflow.domain.timeseries import PortfolioPoint, PositionPoint, Rate, SeriesBook, day_value
from epochflow.schemas.events import parse_reference
from epochflow.schemas.results import (
    Barrier,
    CashflowRow,
    HistoryCarryOver,
    JobOutcome,
    PortfolioTimeseriesRow,
    PositionTimeseriesRow,
    SnapshotRow,
    TransactionRow,
)
from epochflow.schemas.series import CHANGES, BarrierMark, CarryChange, CashflowChange, SnapshotChange, encode_changes
from epochflow.streams.partitioning import partition_for
from epochflow.tables.reference import ReferenceData, apply_reference_event
from epochflow.tables.store import Store

TOPIC = "portfolio-changes"
FORWARDED_SOURCES = (b"positions", b"valuation")


def changes_of(rows: list, version: int) -> list:
    """The series changes in one results message of the positions or valuation role."""
    changes: list = []
    for row in rows:
        if isinstance(row, TransactionRow):
            changes.append(CashflowChange(
                transaction_id=row.transaction_id, portfolio_id=row.portfolio_id, security_id=row.security_id,
                transaction_type=row.transaction_type, transaction_date=row.transaction_date.date(),
                gross_amount=row.gross_amount, trade_fee=row.trade_fee, currency=row.trade_currency,
                epoch=row.epoch, version=version))
        elif isinstance(row, HistoryCarryOver):
            changes.append(CarryChange(portfolio_id=row.portfolio_id, security_id=row.security_id,
                                       from_epoch=row.from_epoch, to_epoch=row.to_epoch, before_date=row.before_date))
        elif isinstance(row, SnapshotRow):
            changes.append(SnapshotChange(
                portfolio_id=row.portfolio_id, security_id=row.security_id, date=row.date, epoch=row.epoch,
                version=version, quantity=row.quantity, cost_basis_local=row.cost_basis_local,
                market_value_local=row.market_value_local, market_value=row.market_value,
                valuation_status=row.valuation_status))
        elif isinstance(row, JobOutcome) and row.outcome == "SKIPPED_NO_POSITION":
            changes.append(SnapshotChange(portfolio_id=row.portfolio_id, security_id=row.security_id,
                                          date=row.valuation_date, epoch=row.epoch, version=version))
        elif isinstance(row, Barrier) and row.stage.startswith("positions."):
            changes.append(BarrierMark(token=row.token, stage=row.stage, source_partition=row.partition))
    return changes


def forward(rows: list, version: int, partitions: int) -> list[Message]:
    """One message per portfolio on its partition; barrier marks to every partition."""
    by_portfolio: dict[str, list] = defaultdict(list)
    marks: list[BarrierMark] = []
    for change in changes_of(rows, version):
        if isinstance(change, BarrierMark):
            marks.append(change)
        else:
            by_portfolio[change.portfolio_id].append(change)
    messages = [Message(TOPIC, partition_for(pid, partitions), pid.encode(), encode_changes(changes))
                for pid, changes in by_portfolio.items()]
    if marks:
        value = encode_changes(marks)
        messages += [Message(TOPIC, p, b"barrier", value) for p in range(partitions)]
    return messages


def cashflow_from(change: CashflowChange) -> Cashflow | None:
    return cashflow_of(change.transaction_id, change.portfolio_id, change.security_id, change.transaction_type,
                       change.transaction_date, change.gross_amount, change.trade_fee, change.currency,
                       change.epoch, change.version)


def cashflow_row(flow: Cashflow) -> CashflowRow:
    return CashflowRow(
        transaction_id=flow.transaction_id, portfolio_id=flow.portfolio_id, security_id=flow.security_id,
        transaction_type=flow.transaction_type, amount=flow.amount, currency=flow.currency,
        classification=flow.classification.value, timing=flow.timing.value, calculation_type=flow.calculation_type,
        is_position_flow=flow.is_position_flow, is_portfolio_flow=flow.is_portfolio_flow,
        cashflow_date=flow.cashflow_date, epoch=flow.epoch, version=flow.version)


def position_row(p: PositionPoint, version: int) -> PositionTimeseriesRow:
    return PositionTimeseriesRow(
        portfolio_id=p.portfolio_id, security_id=p.security_id, date=p.day, epoch=p.epoch, version=version,
        present=p.present, bod_market_value=p.bod_market_value, eod_market_value=p.eod_market_value,
        quantity=p.quantity, cost=p.cost, bod_cashflow_position=p.bod_cashflow_position,
        eod_cashflow_position=p.eod_cashflow_position, bod_cashflow_portfolio=p.bod_cashflow_portfolio,
        eod_cashflow_portfolio=p.eod_cashflow_portfolio)


def portfolio_row(p: PortfolioPoint, version: int) -> PortfolioTimeseriesRow:
    return PortfolioTimeseriesRow(
        portfolio_id=p.portfolio_id, date=p.day, version=version, present=p.present,
        bod_market_value=p.bod_market_value, eod_market_value=p.eod_market_value, bod_cashflow=p.bod_cashflow,
        eod_cashflow=p.eod_cashflow, fees=p.fees, daily_return=p.daily_return,
        valuation_status=p.valuation_status, keys_unvalued=p.keys_unvalued)


@dataclass
class SeriesHandler:
    book: SeriesBook
    marks: Store[tuple[int, ...]]  # barrier|token|stage|pN -> results partitions whose mark arrived
    reference: ReferenceData
    partitions: int

    def rate_for(self, portfolio_id: str) -> Rate:
        portfolio = self.reference.portfolios.get(portfolio_id)

        def rate(currency: str, day: date) -> Decimal | None:
            return None if portfolio is None else self.reference.fx(currency, portfolio.base_currency, day)
        return rate

    def on_changes(self, raw: bytes, partition: int, offset: int) -> list:
        """Apply one message of changes (at `offset` of its portfolio-changes partition);
        the rows of what changed, numbered by that offset (a replay numbers them the same,
        so the sink takes them again), and the barriers due."""
        rows: list = []
        for change in CHANGES.validate_json(raw):
            if isinstance(change, BarrierMark):
                rows += self._mark(change, partition)
            elif isinstance(change, CarryChange):
                self.book.on_carry(change.portfolio_id, change.security_id, change.from_epoch, change.to_epoch,
                                   change.before_date)
            elif isinstance(change, SnapshotChange):
                value = None if change.quantity is None else day_value(
                    change.quantity, change.cost_basis_local or Decimal(0), change.market_value_local,
                    change.market_value, change.valuation_status)
                self.book.on_snapshot(change.portfolio_id, change.security_id, change.date, change.epoch,
                                      change.version, value)
            else:
                flow = cashflow_from(change)
                if flow is not None and self.book.on_cashflow(flow):
                    rows.append(cashflow_row(flow))
        positions, portfolios = self.book.points(self.rate_for)
        rows += [position_row(p, offset) for p in positions]
        rows += [portfolio_row(p, offset) for p in portfolios]
        return rows

    def _mark(self, mark: BarrierMark, partition: int) -> list[Barrier]:
        key = partition_record(partition, "barrier", mark.token, mark.stage)
        seen = tuple(sorted({*(self.marks.get(key) or ()), mark.source_partition}))
        if len(seen) < self.partitions:
            self.marks.put(key, seen)
            return []
        self.marks.delete(key)
        return [Barrier(token=mark.token, stage=f"timeseries<-{mark.stage}", partition=partition)]


# -- the role's inputs as its agents take them: a message (key, value, offset) -----------------
def on_results(handler: SeriesHandler, message, partition: int, now: float) -> list:
    """The results topic: the positions and valuation rows, sent on by portfolio."""
    if message.key not in FORWARDED_SOURCES:
        return []
    return forward(metrics.decode(decode_rows, message.value), message.offset, handler.partitions)


def on_reference(handler: SeriesHandler, message, partition: int, now: float) -> list:
    apply_reference_event(handler.reference, metrics.decode(parse_reference, message.value))
    return []


def on_changes(handler: SeriesHandler, message, partition: int, now: float) -> list:
    return handler.on_changes(message.value, partition, message.offset)
