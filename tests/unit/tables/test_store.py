"""The store contract (`epochflow/tables/store.py`): every store the agents talk to answers
`get` / `put` / `delete` the same way and gives values back exactly as they were stored
(Decimals to the last digit and exponent, falsy values, dates).

The stores under the contract: the in-memory twin (`MemoryStore`), the Faust-backed store
(`FaustStore`) over a real Faust table with Faust's in-memory storage, and the batch's
write-through view (`CachedStore`) over either. The `Store` protocol has no iteration or
key listing: the stores are read by key only (`CachedStore.pending` lists a batch's writes,
tested below).

Faust tables refuse writes outside stream iteration: a write sends a changelog message to
the partition of the event being processed. The FaustStore is therefore used the way the
batch agents use it, inside the context of a real stream event (taken from a test agent),
and one test shows the refusal outside it. Nothing here needs a broker: the changelog
messages wait in the (never started) producer's buffer.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import faust
import pytest
import pytest_asyncio
from faust.streams import _current_event, current_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epochflow.domain.model import Holding, Lot, PositionState
from epochflow.domain.series import SeriesMonth
from epochflow.tables.codec import encode
from epochflow.tables.store import CachedStore, FaustStore, MemoryStore

pytestmark = pytest.mark.asyncio(loop_scope="module")

D = Decimal

# -- the Faust machinery: an app of its own, in-memory table storage, no broker -----------

_DATA_DIR = tempfile.mkdtemp(prefix="epochflow-store-contract-")
atexit.register(shutil.rmtree, _DATA_DIR, True)
_app = faust.App(
    "epochflow-store-contract",
    broker="kafka://127.0.0.1:1",  # never contacted
    store="memory://",
    datadir=_DATA_DIR,
    web_enabled=False,
)
_table_numbers = itertools.count()
_seen_events: list[Any] = []


@_app.agent()
async def _capture_event(stream):
    async for _ in stream:
        _seen_events.append(current_event())


def _new_table() -> Any:
    """A fresh table, declared with the options `epochflow.tables.declare.role_table` uses
    (raw bytes keys and values: the typed store does the encoding)."""
    return _app.Table(
        f"contract-{next(_table_numbers)}", default=None, key_type=bytes, value_type=bytes, partitions=1
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stream_event() -> Any:
    """A real stream event, as an agent iterating its stream sees it."""
    async with _capture_event.test_context() as agent:
        await agent.put(b"go", key=b"P1|S1", partition=0)
        for _ in range(500):
            if _seen_events:
                break
            await asyncio.sleep(0.01)
    assert _seen_events, "the test agent did not see its event"
    return _seen_events[0]


@contextmanager
def in_event(event: Any) -> Iterator[None]:
    # what the batch agents do before writing a partition's tables (agents/batching.py)
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class InStreamIteration:
    """A FaustStore used as the agents use it: every call inside a stream event's context."""

    def __init__(self, store: FaustStore, event: Any) -> None:
        self.store = store
        self.event = event

    @property
    def table(self) -> Any:
        return self.store.table

    def get(self, key: str) -> Any:
        with in_event(self.event):
            return self.store.get(key)

    def put(self, key: str, value: Any) -> None:
        with in_event(self.event):
            self.store.put(key, value)

    def delete(self, key: str) -> None:
        with in_event(self.event):
            self.store.delete(key)


# -- the stores under the contract ------------------------------------------------------

STORES = ("memory", "faust", "cached-memory", "cached-faust")
NewStore = Callable[[Any], Any]


@pytest.fixture(params=STORES)
def new_store(request: pytest.FixtureRequest, stream_event: Any) -> NewStore:
    """`new_store(kind)`: an empty store of the parametrized sort for values of `kind`."""

    def faust_store(kind: Any) -> InStreamIteration:
        return InStreamIteration(FaustStore(_new_table(), kind), stream_event)

    makers: dict[str, NewStore] = {
        "memory": lambda kind: MemoryStore(),
        "faust": faust_store,
        "cached-memory": lambda kind: CachedStore(MemoryStore()),
        "cached-faust": lambda kind: CachedStore(faust_store(kind)),
    }
    return makers[request.param]


def month(*points: tuple[str, str]) -> SeriesMonth:
    return SeriesMonth("2025-08", tuple((date.fromisoformat(d), D(v)) for d, v in points))


# Decimals whose text must survive: trailing zeros, exponents, negative zero, many digits
EXACT = month(
    ("2025-08-01", "1389.9000"),
    ("2025-08-02", "1E+3"),
    ("2025-08-03", "-0.00"),
    ("2025-08-04", "12345678901234567890.123456789012345"),
    ("2025-08-05", "0.000000001"),
)
STATE = PositionState(
    portfolio_id="P1",
    security_id="S1",
    epoch=3,
    watermark_date=date(2025, 8, 4),
    holding=Holding(
        quantity=D("150.0000"),
        cost_local=D("31000.00"),
        cost_base=None,
        lots=(Lot(D("100"), D("20000.00"), None), Lot(D("50.0000"), D("11000"), None)),
        held_since=date(2025, 8, 1),
    ),
    weeks=(("2025-W31", 2),),
    waiting_for="fx EUR/USD 2025-08-01",
    reset_jobs=("job-1",),
)


def decimal_texts(value: SeriesMonth) -> list[str]:
    return [str(v) for _, v in value.points]


# -- the contract -------------------------------------------------------------------------

async def test_get_of_a_missing_key_is_none(new_store: NewStore) -> None:
    store = new_store(SeriesMonth)
    assert store.get("P1|S1") is None
    assert store.get("") is None


async def test_put_then_get_gives_the_value_back_exactly(new_store: NewStore) -> None:
    store = new_store(SeriesMonth)
    store.put("price|S1|2025-08", EXACT)
    got = store.get("price|S1|2025-08")
    assert got == EXACT
    assert decimal_texts(got) == decimal_texts(EXACT)  # equal is not enough: the digits too


async def test_a_domain_state_with_nested_decimals_comes_back_equal(new_store: NewStore) -> None:
    store = new_store(PositionState)
    store.put("P1|S1", STATE)
    got = store.get("P1|S1")
    assert got == STATE
    assert [str(lot.quantity) for lot in got.holding.lots] == ["100", "50.0000"]
    assert (str(got.holding.quantity), got.holding.cost_base) == ("150.0000", None)


@pytest.mark.parametrize("kind, value", [(int, 0), (str, ""), (date, date(2025, 8, 1)), (int, -1)])
async def test_falsy_and_scalar_values_are_values_not_absence(new_store: NewStore, kind: Any, value: Any) -> None:
    store = new_store(kind)
    store.put("counter", value)
    got = store.get("counter")
    assert got == value and got is not None and type(got) is type(value)


async def test_a_put_overwrites(new_store: NewStore) -> None:
    store = new_store(SeriesMonth)
    store.put("k", month(("2025-08-01", "10")))
    store.put("k", month(("2025-08-01", "10.50")))
    assert decimal_texts(store.get("k")) == ["10.50"]


async def test_delete_removes_only_its_key(new_store: NewStore) -> None:
    store = new_store(int)
    for key, value in (("P1|S1", 1), ("P1|S1|2025-08", 2), ("P1|S2", 3)):
        store.put(key, value)
    store.delete("P1|S1")
    assert store.get("P1|S1") is None
    assert (store.get("P1|S1|2025-08"), store.get("P1|S2")) == (2, 3)


async def test_delete_of_a_missing_key_is_a_no_op(new_store: NewStore) -> None:
    store = new_store(int)
    store.delete("never-written")
    store.put("k", 1)
    store.delete("k")
    store.delete("k")  # twice
    assert store.get("k") is None and store.get("never-written") is None


async def test_a_deleted_key_can_be_written_again(new_store: NewStore) -> None:
    store = new_store(int)
    store.put("k", 1)
    store.delete("k")
    store.put("k", 2)
    assert store.get("k") == 2


async def test_keys_are_compared_as_text_not_by_prefix_or_case(new_store: NewStore) -> None:
    store = new_store(str)
    keys = ("P1|S1", "P1|S1 ", "p1|s1", "P1|S10", "P1|Société", "fx|EUR|USD|p0")
    for key in keys:
        store.put(key, f"value of {key}")
    assert [store.get(key) for key in keys] == [f"value of {key}" for key in keys]


# -- model-based: a random sequence of puts and deletes ends where a dict ends -------------

_ALL_KEYS = ("P1|S1", "P1|S2", "P2|S1", "fx|EUR|USD", "é|1")
KEYS = st.sampled_from(_ALL_KEYS)
AMOUNTS = st.decimals(allow_nan=False, allow_infinity=False)
VALUES = st.lists(st.tuples(st.dates(date(2025, 8, 1), date(2025, 8, 31)), AMOUNTS), max_size=3, unique_by=lambda p: p[0])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), KEYS, VALUES),
        st.tuples(st.just("delete"), KEYS, st.none()),
        st.tuples(st.just("flush"), st.none(), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
async def test_any_sequence_of_puts_and_deletes_reads_like_a_dict(new_store: NewStore, ops: list) -> None:
    store = new_store(SeriesMonth)
    model: dict[str, SeriesMonth] = {}
    for op, key, points in ops:
        if op == "put":
            value = SeriesMonth("2025-08", tuple(sorted(points)))
            store.put(key, value)
            model[key] = value
        elif op == "delete":
            store.delete(key)
            model.pop(key, None)
        elif isinstance(store, CachedStore):  # "flush": the batch ends
            store.flush()
        assert {k: store.get(k) for k in _ALL_KEYS} == {k: model.get(k) for k in _ALL_KEYS}
    for k, value in model.items():
        assert decimal_texts(store.get(k)) == decimal_texts(value)
    if isinstance(store, CachedStore):
        store.flush()
        assert {k: store.backing.get(k) for k in _ALL_KEYS} == {k: model.get(k) for k in _ALL_KEYS}


# -- CachedStore: reads its own writes, writes through once per key on flush ---------------

@dataclass
class Recording:
    """A backing store that counts what reaches it."""

    inner: Any
    gets: int = 0
    puts: int = 0
    deletes: int = 0

    def get(self, key: str) -> Any:
        self.gets += 1
        return self.inner.get(key)

    def put(self, key: str, value: Any) -> None:
        self.puts += 1
        self.inner.put(key, value)

    def delete(self, key: str) -> None:
        self.deletes += 1
        self.inner.delete(key)


@pytest.fixture(params=["memory", "faust"])
def backing(request: pytest.FixtureRequest, stream_event: Any) -> Recording:
    if request.param == "memory":
        return Recording(MemoryStore())
    return Recording(InStreamIteration(FaustStore(_new_table(), int), stream_event))


async def test_the_cached_store_reads_its_own_writes_before_anything_reaches_the_backing(backing: Recording) -> None:
    cached = CachedStore(backing)
    cached.put("a", 1)
    cached.put("b", 2)
    cached.delete("b")
    assert (cached.get("a"), cached.get("b")) == (1, None)
    assert (backing.puts, backing.deletes) == (0, 0)
    assert backing.inner.get("a") is None


async def test_flush_writes_each_dirty_key_through_once_with_its_last_value(backing: Recording) -> None:
    backing.inner.put("gone", 7)
    backing.inner.put("kept", 8)
    cached = CachedStore(backing)
    for value in (1, 2, 3):
        cached.put("a", value)
    cached.put("gone", 9)
    cached.delete("gone")
    cached.flush()
    assert (backing.inner.get("a"), backing.inner.get("gone"), backing.inner.get("kept")) == (3, None, 8)
    assert (backing.puts, backing.deletes) == (1, 1)
    assert list(cached.pending()) == []
    cached.flush()  # nothing dirty: nothing written again
    assert (backing.puts, backing.deletes) == (1, 1)
    assert (cached.get("a"), cached.get("gone")) == (3, None)  # and it still reads what it wrote


async def test_pending_lists_the_batch_writes_with_deletes_as_none(backing: Recording) -> None:
    cached = CachedStore(backing)
    cached.put("a", 1)
    cached.delete("b")
    cached.put("c", 0)
    assert list(cached.pending()) == [("a", 1), ("b", None), ("c", 0)]


async def test_flush_of_some_keys_leaves_the_others_pending(backing: Recording) -> None:
    cached = CachedStore(backing)
    cached.put("a", 1)
    cached.put("b", 2)
    cached.flush({"b"})
    assert (backing.inner.get("a"), backing.inner.get("b")) == (None, 2)
    assert list(cached.pending()) == [("a", 1)]
    cached.flush()
    assert backing.inner.get("a") == 1


async def test_a_key_is_read_from_the_backing_once_per_batch_even_when_missing(backing: Recording) -> None:
    backing.inner.put("a", 5)
    cached = CachedStore(backing)
    assert [cached.get("a") for _ in range(3)] == [5, 5, 5]
    assert [cached.get("missing") for _ in range(3)] == [None, None, None]
    assert backing.gets == 2


async def test_a_falsy_value_is_written_through_not_taken_for_a_delete(backing: Recording) -> None:
    backing.inner.put("counter", 4)
    cached = CachedStore(backing)
    cached.put("counter", 0)
    cached.flush()
    assert backing.inner.get("counter") == 0 and (backing.puts, backing.deletes) == (1, 0)


# -- FaustStore over the table -------------------------------------------------------------

@pytest.fixture
def faust_store(stream_event: Any) -> InStreamIteration:
    return InStreamIteration(FaustStore(_new_table(), SeriesMonth), stream_event)


async def test_faust_tables_refuse_writes_outside_stream_iteration(stream_event: Any) -> None:
    store = FaustStore(_new_table(), int)
    assert current_event() is None
    with pytest.raises(TypeError, match="outside of stream iteration"):
        store.put("k", 1)
    with in_event(stream_event):
        store.put("k", 1)
    assert store.get("k") == 1  # reads need no event


async def test_the_table_holds_compact_json_with_decimals_as_strings(faust_store: InStreamIteration) -> None:
    faust_store.put("price|S1|2025-08", EXACT)
    raw = faust_store.table[b"price|S1|2025-08"]
    assert raw == encode(EXACT, SeriesMonth)
    assert json.loads(raw)["points"][0] == ["2025-08-01", "1389.9000"]


async def test_a_table_value_changed_underneath_is_decoded_again(faust_store: InStreamIteration, stream_event: Any) -> None:
    """What a changelog recovery or a rebalance does: new bytes in the table, not through
    the store. The decoded-value cache must not serve the old value."""
    faust_store.put("k", month(("2025-08-01", "10")))
    assert decimal_texts(faust_store.get("k")) == ["10"]
    with in_event(stream_event):
        faust_store.table[b"k"] = encode(month(("2025-08-01", "11.50")), SeriesMonth)
    assert decimal_texts(faust_store.get("k")) == ["11.50"]
    with in_event(stream_event):
        del faust_store.table[b"k"]
    assert faust_store.get("k") is None


async def test_a_delete_removes_the_key_from_the_table(faust_store: InStreamIteration) -> None:
    faust_store.put("k", EXACT)
    faust_store.delete("k")
    assert b"k" not in faust_store.table
    faust_store.delete("k")  # a missing key: no error
