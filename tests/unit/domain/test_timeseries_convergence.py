"""For any arrival order of the same changes, with duplicates, epoch bumps and corrections,
the incrementally kept series equals the one summed from scratch over each key's
current-epoch snapshots.

Each key's changes are generated as its story (the order the key's own producer emits
them: snapshots, price corrections as newer versions of a day, days with no position,
carry-overs into a new epoch, now and then a snapshot of a new epoch with no carry-over),
and each transaction's cash flow as its versions (amendments, possibly to another day or
key). The arrival order is any interleaving of those stories, with any earlier change
delivered again anywhere later. The book is read out in batches at random points, and
its rows are applied to a model of the sink (keyed rows, upserted; a row no longer
present is removed); at the end that model must equal the from-scratch series, for the
portfolio and for every key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from series_factories import book, flow, usd, value

from epochflow.domain.cashflows import Cashflow
from epochflow.domain.timeseries import DAY, DayValue, FlowSums, KeyDay, position_point, series_of

FIRST = date(2025, 6, 2)
DAYS = [FIRST + timedelta(days=n) for n in range(5)]
SECURITIES = ["A", "B", "C"]


@dataclass(frozen=True)
class Snap:
    security: str
    day: date
    epoch: int
    version: int
    value: DayValue | None


@dataclass(frozen=True)
class Carry:
    security: str
    from_epoch: int
    to_epoch: int
    before: date


@st.composite
def key_story(draw, security: str) -> list:
    epoch, version, story = 0, 0, []
    for _ in range(draw(st.integers(0, 12))):
        version += 1
        kind = draw(st.sampled_from(["snap", "snap", "snap", "none", "carry", "jump"]))
        day = draw(st.sampled_from(DAYS))
        if kind == "carry":
            story.append(Carry(security, epoch, epoch + 1, day))
            epoch += 1
            continue
        if kind == "jump":
            epoch += 1
        v = None
        if kind != "none":
            status = draw(st.sampled_from(["VALUED_CURRENT", "VALUED_STALE", "UNVALUED"]))
            mv = draw(st.integers(0, 1000))
            v = value(str(draw(st.integers(0, 20))), str(draw(st.integers(0, 900))), str(mv), str(mv * 2), status)
        story.append(Snap(security, day, epoch, version, v))
    return story


@st.composite
def flow_story(draw, tid: str) -> list[Cashflow]:
    versions = []
    for n in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["BUY", "SELL", "FEE", "DEPOSIT", "WITHDRAWAL", "TRANSFER_IN", "DIVIDEND"]))
        versions.append(flow(tid, draw(st.sampled_from(SECURITIES)), kind, draw(st.sampled_from(DAYS)),
                             str(draw(st.integers(1, 500))), str(draw(st.integers(0, 3))),
                             draw(st.sampled_from(["USD", "EUR"])), epoch=draw(st.integers(0, 1)) if n else 0,
                             version=n + 1))
    # versions fence by (epoch, version): keep the story in fence order
    return sorted(versions, key=lambda f: f.fence)


@st.composite
def arrivals(draw):
    stories = [draw(key_story(s)) for s in SECURITIES]
    stories += [draw(flow_story(f"T{n}")) for n in range(draw(st.integers(0, 4)))]
    order: list = []
    cursors = [0] * len(stories)
    while any(c < len(s) for c, s in zip(cursors, stories)):
        live = [i for i, s in enumerate(stories) if cursors[i] < len(s)]
        i = draw(st.sampled_from(live))
        order.append(stories[i][cursors[i]])
        cursors[i] += 1
        if draw(st.integers(0, 5)) == 0:  # a batch boundary
            order.append("read")
    for _ in range(draw(st.integers(0, 6))):  # duplicates, delivered again anywhere later
        changes = [n for n, c in enumerate(order) if c != "read"]
        if not changes:
            break
        n = draw(st.sampled_from(changes))
        order.insert(draw(st.integers(n + 1, len(order))), order[n])
    return stories, order


def from_scratch(stories: list) -> tuple[dict, dict]:
    """Each key's current-epoch days, then the series summed over them."""
    current: dict[str, tuple[int, dict[date, DayValue]]] = {}
    flows: dict[str, Cashflow] = {}
    for story in stories:
        for change in story:
            if isinstance(change, Cashflow):
                flows[change.transaction_id] = change
                continue
            epoch, days = current.get(change.security, (0, {}))
            if isinstance(change, Carry):
                if change.to_epoch > epoch:
                    keep = change.from_epoch == epoch
                    days = {d: v for d, v in days.items() if keep and d < change.before}
                    epoch = change.to_epoch
            elif change.epoch >= epoch:
                if change.epoch > epoch:
                    days, epoch = {}, change.epoch
                days = {**days, change.day: change.value}
                days = {d: v for d, v in days.items() if v is not None}
            current[change.security] = (epoch, days)
    values = [(s, d, v) for s, (_, days) in current.items() for d, v in days.items()]
    portfolio = {d: p for d, p in series_of("P", values, flows.values(), usd).items()}
    positions = {}
    for s, (epoch, days) in current.items():
        for d, v in days.items():
            sums = FlowSums()
            for f in flows.values():
                if f.security_id == s and f.cashflow_date == d:
                    sums = sums.plus(f, +1)
            today = KeyDay(epoch, 0, v, sums)
            yesterday = KeyDay(epoch, 0, days.get(d - DAY))
            positions[(s, d)] = position_point("P", s, d, epoch, today, yesterday)
    return portfolio, positions


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrivals())
def test_any_arrival_order_converges_to_the_series_from_scratch(case) -> None:
    stories, order = case
    b = book()
    sink_portfolio: dict = {}
    sink_positions: dict = {}

    def read() -> None:
        positions, portfolios = b.points(lambda p: usd)
        for point in portfolios:
            sink_portfolio[point.day] = point
        for point in positions:
            sink_positions[(point.security_id, point.day)] = point

    for change in order:
        if change == "read":
            read()
        elif isinstance(change, Cashflow):
            b.on_cashflow(change)
        elif isinstance(change, Carry):
            b.on_carry("P", change.security, change.from_epoch, change.to_epoch, change.before)
        else:
            b.on_snapshot("P", change.security, change.day, change.epoch, change.version, change.value)
    read()
    portfolio, positions = from_scratch(stories)
    assert {d: p for d, p in sink_portfolio.items() if p.present} == portfolio
    current = {k: p for k, p in sink_positions.items() if p.present and p.epoch == b.track("P", k[0]).epoch}
    assert current == positions
