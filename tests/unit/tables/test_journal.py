"""The redo journal: encoding, and the guarantee that a step killed after any prefix of its
records ends, after a restart and re-delivery, exactly like an undisturbed run."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epochflow.tables import journal
from epochflow.tables.journal import Entry, Output, Write
from tests.fixtures.faults import BATCH_BYTES, Killed, MemoryWorker

blobs = st.binary(max_size=40)
writes = st.builds(Write, table=st.sampled_from(["state", "refs"]), key=blobs, value=st.none() | blobs)
outputs = st.builds(Output, topic=st.sampled_from(["results", "valuation-jobs"]), partition=st.integers(0, 2**31 - 1),
                    key=blobs, value=blobs)


@given(st.lists(writes, max_size=20), st.lists(outputs, max_size=20), st.integers(1, 200), st.integers(0, 7))
def test_records_read_back_as_the_entry(ws, outs, chunk_bytes, partition):
    entry = Entry(tuple(ws), tuple(outs))
    stored = dict(journal.records(partition, entry, chunk_bytes))
    found = journal.read(stored.get, partition)
    assert found is not None
    assert found[0] == entry
    assert set(found[1]) == set(stored)


def test_records_are_chunked_and_the_head_comes_last():
    entry = Entry(tuple(Write("state", b"k%d" % i, b"x" * 100) for i in range(10)))
    recs = journal.records(3, entry, chunk_bytes=250)
    assert recs[-1][0] == journal.head_key(3)
    assert len(recs) == 6  # two items per chunk, then the head
    assert all(len(value) <= 250 for _, value in recs[:-1])


def test_no_head_is_no_journal_and_nor_is_a_head_whose_chunks_were_deleted():
    recs = dict(journal.records(0, Entry((Write("state", b"k", b"v"), Write("state", b"j", b"w"))), chunk_bytes=16))
    assert journal.read({}.get, 0) is None
    assert journal.read(recs.get, 0) is not None
    del recs[next(key for key in recs if key.startswith(b"chunk|"))]  # its head's delete refused, a chunk's taken
    assert journal.read(recs.get, 0) is None


def test_a_head_names_only_its_own_steps_chunks():
    first = dict(journal.records(0, Entry(tuple(Write("state", b"k%d" % i, b"1") for i in range(3))), chunk_bytes=16))
    second = dict(journal.records(0, Entry(tuple(Write("state", b"k%d" % i, b"2") for i in range(4))), chunk_bytes=16))
    assert not set(first) - {journal.head_key(0)} & set(second)
    mixed = {**first, **{key: value for key, value in second.items() if key != journal.head_key(0)}}
    entry, _ = journal.read(mixed.get, 0)  # the first step's head, the second step's chunks beside its own
    assert {w.value for w in entry.writes} == {b"1"}


def test_a_head_from_before_steps_were_named_reads_its_chunks():
    old = {journal.chunk_key(0, 0): b"".join(journal._item(w) for w in (Write("state", b"k", b"v"),)),
           journal.head_key(0): b'{"chunks": 1}'}
    entry, keys = journal.read(old.get, 0)
    assert entry.writes == (Write("state", b"k", b"v"),) and keys == [b"chunk|p0|0", b"head|p0"]


class _Calls(MemoryWorker):
    """Records the order of journal puts and deliveries."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def put_journal(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.calls.append(("delete " if value is None else "put ") + key.decode().split("|")[0])
        super().put_journal(partition, key, value)

    async def delivered(self) -> None:
        self.calls.append("delivered")
        await super().delivered()


@pytest.mark.parametrize(("values", "chunk_bytes", "order"), [
    # within a chunk's bytes: the chunk and its head go together (one record batch, all or nothing)
    ([b"x" * 10, b"y" * 10], 1000, ["put chunk", "put head", "delivered", "delivered"]),
    # more than a chunk's bytes may span record batches: the head waits for its chunks
    ([b"x" * 10, b"y" * 10], 16, ["put chunk", "put chunk", "delivered", "put head", "delivered", "delivered"]),
])
def test_a_journal_larger_than_a_chunk_is_delivered_before_its_head_is_written(values, chunk_bytes, order):
    worker = _Calls()
    entry = Entry(tuple(Write("state", b"k%d" % i, value) for i, value in enumerate(values)))
    asyncio.run(journal.commit(worker, {0: entry}, chunk_bytes=chunk_bytes))
    assert worker.calls[: len(order)] == order
    chunks = order.count("put chunk")
    assert worker.calls[len(order):] == ["delete head"] + ["delete chunk"] * chunks


# -- a role in miniature: quantities summed once per transaction id ------------------------------
# The state and the fingerprint that guards it live in two tables, as in the positions role.
def step(worker: MemoryWorker, events: list[tuple[str, int]]) -> Entry:
    total = int(worker.get("state", 0, b"total") or b"0")
    seen: dict[bytes, bytes] = {}
    for txn_id, quantity in events:
        key = txn_id.encode()
        if worker.get("refs", 0, key) is None and key not in seen:
            total += quantity
            seen[key] = b"1"
    if not seen:
        return Entry()
    ws = [Write("state", b"total", str(total).encode())] + [Write("refs", k, v) for k, v in seen.items()]
    return Entry(tuple(ws), (Output("results", 0, b"total", str(total).encode()),))


async def direct(worker: MemoryWorker, entry: Entry) -> None:
    """What the roles did before the journal: write the tables, send, then wait."""
    for write in entry.writes:
        worker.apply(0, write)
    for output in entry.outputs:
        worker.send(output)
    await worker.delivered()


async def journalled(worker: MemoryWorker, entry: Entry) -> None:
    await journal.commit(worker, {0: entry}, chunk_bytes=16)


def play(batches: list[list[tuple[str, int]]], commit, kill_at: int | None, keep_local: bool,
         landing=lambda pending: pending, refuse: int | None = None, batch_bytes: int = BATCH_BYTES) -> MemoryWorker:
    """Run the batches; killed, restart and deliver again from the last committed batch;
    at the end, the producer delivers what is still in flight (the last step's deletes)."""
    worker = MemoryWorker(kill_at=kill_at, landing=landing, refuse=refuse, batch_bytes=batch_bytes)
    committed = 0  # input offset: batches before it are never delivered again

    async def go(worker: MemoryWorker, committed: int) -> int:
        await journal.redo(worker, [0])
        for i in range(committed, len(batches)):
            await commit(worker, step(worker, batches[i]))
            committed = i + 1
        await worker.delivered()
        return committed

    try:
        committed = asyncio.run(go(worker, committed))
    except Killed:
        worker = worker.restart(keep_local)
        committed = asyncio.run(go(worker, committed))
    return worker


def run(batches: list[list[tuple[str, int]]], commit, kill_at: int | None, keep_local: bool,
        landing=lambda pending: pending, refuse: int | None = None,
        batch_bytes: int = BATCH_BYTES) -> tuple[bytes | None, bytes | None]:
    """The total and the last message sent, after `play`."""
    worker = play(batches, commit, kill_at, keep_local, landing, refuse, batch_bytes)
    last_output = worker.outputs()[-1].value if worker.outputs() else None
    return worker.get("state", 0, b"total"), last_output


def rebuilt(worker: MemoryWorker) -> bytes | None:
    """The total a worker restarted from the changelog alone would hold, its journal redone."""
    fresh = worker.restart(keep_local=False)
    asyncio.run(journal.redo(fresh, [0]))
    return fresh.get("state", 0, b"total")


BATCHES = [[("t1", 5), ("t2", 7)], [("t3", 7), ("t1", 5)], [("t4", 1)]]
# steps whose journals grow: a later step has more chunks than the one before it
GROWING = [[("t1", 5)], [("t2", 7), ("t3", 7), ("t1", 5)], [("t4", 1), ("t5", 2), ("t6", 3), ("t2", 7)]]


def records_of(commit) -> int:
    return play(BATCHES, commit, None, keep_local=False).enqueued


@pytest.mark.parametrize("keep_local", [False, True], ids=["restored_from_changelog", "local_state_kept"])
def test_a_kill_at_any_record_of_a_journalled_step_ends_like_an_undisturbed_run(keep_local):
    expected = run(BATCHES, journalled, None, keep_local)
    assert expected == (b"20", b"20")
    for k in range(records_of(journalled) + 1):
        assert run(BATCHES, journalled, k, keep_local) == expected, f"killed at record {k}"


def test_without_the_journal_a_kill_between_the_state_and_its_fingerprint_counts_a_trade_twice():
    """The harness sees the hole the journal closes: state landed, fingerprint lost."""
    expected = run(BATCHES, direct, None, keep_local=False)
    outcomes = {k: run(BATCHES, direct, k, keep_local=False) for k in range(records_of(direct) + 1)}
    assert any(outcome != expected for outcome in outcomes.values())


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.randoms(use_true_random=False), st.booleans())
def test_records_landing_in_any_order_between_barriers_change_nothing(kill_at, rnd, keep_local):
    """Records of different topic-partitions may land in any order before a barrier."""
    def landing(pending):
        shuffled = list(pending)
        rnd.shuffle(shuffled)
        # one topic-partition keeps its order: restore it among each partition's records
        by_log: dict = {}
        for record in pending:
            by_log.setdefault((record.table, record.partition), []).append(record)
        return [by_log[(r.table, r.partition)].pop(0) for r in shuffled]

    k = kill_at % (records_of(journalled) + 1)
    assert run(BATCHES, journalled, k, keep_local, landing) == run(BATCHES, journalled, None, keep_local)


@pytest.mark.parametrize("keep_local", [False, True], ids=["restored_from_changelog", "local_state_kept"])
@pytest.mark.parametrize("batch_bytes", [48, BATCH_BYTES], ids=["small_record_batches", "one_batch_per_log"])
@pytest.mark.parametrize("batches", [BATCHES, GROWING], ids=["steps", "growing_journals"])
def test_a_record_batch_refused_for_good_while_the_ones_after_it_land_ends_like_an_undisturbed_run(
        keep_local, batch_bytes, batches):
    """The broker refuses one batch of a step (or the previous step's journal deletes) and
    takes the batches after it: the worker dies at the failed delivery, and its restart
    ends like an undisturbed run, whichever batch it was."""
    expected = play(batches, journalled, None, keep_local, batch_bytes=batch_bytes)
    total, sent = expected.get("state", 0, b"total"), {r.value for r in expected.outputs()}
    formed = expected.batches
    assert formed > len(batches), "every step sends more than one record batch"
    for b in range(formed):
        refused = play(batches, journalled, None, keep_local, refuse=b, batch_bytes=batch_bytes)
        assert refused.get("state", 0, b"total") == total, f"record batch {b} of {formed} refused"
        assert {r.value for r in refused.outputs()} >= sent, f"a message lost with record batch {b} refused"
        assert rebuilt(refused) == total, f"the changelog differs from the tables with record batch {b} refused"
