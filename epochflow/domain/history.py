"""Position history: a key's transactions in order, each with the position after it,
kept in week buckets so a change recomputes from its own week onward and no earlier.

A week holds at most `PART` entries per bucket: a busy week is kept in parts (`week`,
`week#0001`, ...; the ids sort in history order), so appending a trade rewrites one part
of at most `PART` entries, however many trades the key has that week. A recomputation
rewrites the weeks it touches whole and cuts them into parts again.

A bucket's opening names its whole lots by the entries that acquired them instead of
repeating them (`Bucket.lots_from`), so a bucket's size follows its own entries, not the
key's open lots; a recomputation puts them back from the entries before it."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date
from operator import itemgetter

from epochflow.domain.cost import FxLookup, cost_transaction
from epochflow.domain.model import Bucket, CostContext, HistoryEntry, Holding, Transaction, week_of

BucketLoader = Callable[[str], Bucket | None]

PART = 128  # entries per bucket at most, when appending


def part_id(week: str, number: int) -> str:
    """A week's bucket id: the week itself for its first part, `week#NNNN` after it."""
    return week if number == 0 else f"{week}#{number:04d}"


def week_of_part(bucket_id: str) -> str:
    return bucket_id.partition("#")[0]


def _part_number(bucket_id: str) -> int:
    _, _, number = bucket_id.partition("#")
    return int(number) if number else 0


@dataclass(frozen=True, slots=True)
class Rebuilt:
    buckets: tuple[Bucket, ...]  # every bucket that was rewritten (empty ones: delete)
    weeks: tuple[tuple[str, int], ...]  # the key's whole week index with entry counts
    holding: Holding  # after the last entry
    emitted: tuple[tuple[int, HistoryEntry], ...]  # (seq, entry) for entries dated >= from_date
    first_date: date | None
    last_date: date | None
    count: int  # entries in the key's whole history (the sum of `weeks`' counts)


def _insert_sorted(entries: list[Transaction], txn: Transaction) -> None:
    keys = [t.sort_key for t in entries]
    entries.insert(bisect.bisect_left(keys, txn.sort_key), txn)


def rebuild(
    weeks: tuple[tuple[str, int], ...],
    current: Holding,
    load: BucketLoader,
    start_week: str,
    emit_from: date,
    ctx: CostContext,
    fx: FxLookup,
    insert: Transaction | None = None,
    remove_id: str | None = None,
    remove_week: str | None = None,
    may_append: bool = True,
) -> Rebuilt:
    """Re-cost the key from `start_week` to the end, optionally removing one transaction
    (an amendment's old version) and inserting one. Entries dated `emit_from` or later are
    returned for sending; earlier ones are unchanged. An insert after every other entry
    (`may_append`) is an append: only it is costed and returned."""
    if insert is not None and remove_id is None and may_append:
        appended = _append(weeks, current, load, emit_from, ctx, fx, insert)
        if appended is not None:
            return appended
    index = dict(weeks)
    touched_weeks = sorted({week_of_part(m) for m in index if m >= start_week}
                           | ({week_of(insert.date)} if insert else set()))
    parts_of: dict[str, list[str]] = {w: [] for w in touched_weeks}
    for m in sorted(index):
        if m >= start_week:
            parts_of[week_of_part(m)].append(m)
    seq = sum(count for m, count in weeks if m < start_week)

    loaded = {m: load(m) for parts in parts_of.values() for m in parts}
    opening = _opening(weeks, start_week, current, loaded, load)

    txns_by_week: dict[str, list[Transaction]] = {}
    for w, parts in parts_of.items():
        txns_by_week[w] = [e.txn for m in parts if loaded.get(m) for e in loaded[m].entries]
    if remove_id is not None and remove_week in txns_by_week:
        txns_by_week[remove_week] = [t for t in txns_by_week[remove_week] if t.transaction_id != remove_id]
    if insert is not None:
        _insert_sorted(txns_by_week[week_of(insert.date)], insert)

    holding = opening
    new_buckets: list[Bucket] = []
    emitted: list[tuple[int, HistoryEntry]] = []
    for w in touched_weeks:
        for m in parts_of[w]:
            del index[m]
        txns = txns_by_week[w]
        written: set[str] = set()  # this week's parts that still have entries
        for number, first in enumerate(range(0, len(txns), PART)):
            part_opening = holding
            entries: list[HistoryEntry] = []
            for txn in txns[first:first + PART]:
                holding, entry = cost_transaction(holding, txn, ctx, fx, origin=seq)
                entries.append(entry)
                if txn.date >= emit_from:
                    emitted.append((seq, entry))
                seq += 1
            m = part_id(w, number)
            new_buckets.append(_bucket(m, part_opening, tuple(entries)))
            index[m] = len(entries)
            written.add(m)
        new_buckets.extend(Bucket(m, holding, ()) for m in parts_of[w] if m not in written)  # dropped: deleted

    new_weeks = tuple((m, c) for m, c in sorted(index.items()) if c > 0)
    first_date, last_date = _ends(new_weeks, new_buckets, load)
    return Rebuilt(tuple(new_buckets), new_weeks, holding, tuple(emitted), first_date, last_date, entry_count(new_weeks))


def _append(weeks, current: Holding, load: BucketLoader, emit_from: date, ctx: CostContext, fx: FxLookup,
            txn: Transaction) -> Rebuilt | None:
    """The live case: a transaction after every other one costs from the current holding
    alone; nothing before it changes, and only it is sent. It goes into the week's last
    part, or a new part when that one is full. None when it is not an append."""
    week = week_of(txn.date)
    last = weeks[-1][0] if weeks else None
    if last is not None and week < week_of_part(last):
        return None
    bucket = load(last) if last is not None and week == week_of_part(last) else None
    if bucket is not None and bucket.entries and bucket.entries[-1].txn.sort_key >= txn.sort_key:
        return None
    seq = entry_count(weeks)
    holding, entry = cost_transaction(current, txn, ctx, fx, origin=seq)
    if bucket is None:
        new_bucket = _bucket(week, current, (entry,))
    elif len(bucket.entries) >= PART:
        new_bucket = _bucket(part_id(week, _part_number(bucket.week) + 1), current, (entry,))
    else:
        new_bucket = replace(bucket, entries=bucket.entries + (entry,))
    emitted = ((seq, entry),) if txn.date >= emit_from else ()
    # weeks are in order, so only the last can be the appended-to part
    kept = weeks[:-1] if weeks and weeks[-1][0] == new_bucket.week else weeks
    new_weeks = kept + ((new_bucket.week, len(new_bucket.entries)),)
    if weeks:
        first = load(weeks[0][0]) if weeks[0][0] != new_bucket.week else new_bucket
        first_date = first.entries[0].txn.date if first and first.entries else txn.date
    else:
        first_date = txn.date
    return Rebuilt((new_bucket,), new_weeks, holding, emitted, first_date, txn.date, seq + 1)


def entry_count(weeks: tuple[tuple[str, int], ...]) -> int:
    """How many entries a key's history holds, from its index of (part, count)."""
    return sum(map(itemgetter(1), weeks))


def _bucket(bucket_id: str, opening: Holding, entries: tuple[HistoryEntry, ...]) -> Bucket:
    """A bucket whose opening keeps only the lots no entry names: the whole lots at the end
    that entries acquired are named by the first one's origin (see `Bucket`). Lots without
    an origin only ever lead (what remains of a part-sold lot, AVCO's remainder, lots kept
    before lots had origins: sales take from the front), so the first named lot is found
    from the front in a step or two, not by walking every open lot."""
    lots = opening.lots
    first = next((i for i, lot in enumerate(lots) if lot.origin is not None), len(lots))
    if first == len(lots):
        return Bucket(bucket_id, opening, entries)
    return Bucket(bucket_id, replace(opening, lots=lots[:first]), entries, lots[first].origin)


def _opening(weeks, start_week: str, current: Holding, loaded: dict, load: BucketLoader) -> Holding:
    """The holding the key had before `start_week`: the opening of the first existing
    bucket at or after it (buckets store their opening), with its named lots put back, or
    the current holding when the start is past every existing week."""
    seq = 0
    for m, count in weeks:
        if m >= start_week:
            bucket = loaded.get(m) or load(m)
            if bucket is not None:
                return _whole_opening(bucket, seq, weeks, load)
        seq += count
    return current


def _whole_opening(bucket: Bucket, start_seq: int, weeks, load: BucketLoader) -> Holding:
    """The bucket's opening with every lot: the lots acquired by the entries from
    `lots_from` to the bucket's first entry (`start_seq`) follow the ones it keeps."""
    if bucket.lots_from is None:
        return bucket.opening
    named: list = []
    seq = 0
    for m, count in weeks:
        if seq >= start_seq:
            break
        if seq + count > bucket.lots_from:
            earlier = load(m)
            for entry in earlier.entries if earlier else ():
                if entry.lot is not None and bucket.lots_from <= entry.lot.origin < start_seq:
                    named.append(entry.lot)
        seq += count
    return replace(bucket.opening, lots=bucket.opening.lots + tuple(named))


def _ends(weeks, rebuilt: Iterable[Bucket], load: BucketLoader) -> tuple[date | None, date | None]:
    if not weeks:
        return None, None
    by_week = {b.week: b for b in rebuilt}
    first = by_week.get(weeks[0][0]) or load(weeks[0][0])
    last = by_week.get(weeks[-1][0]) or load(weeks[-1][0])
    first_date = first.entries[0].txn.date if first and first.entries else None
    last_date = last.entries[-1].txn.date if last and last.entries else None
    return first_date, last_date


def entries_from(weeks: tuple[tuple[str, int], ...], load: BucketLoader, from_date: date) -> list[tuple[int, HistoryEntry]]:
    """(seq, entry) for every entry dated `from_date` or later, for re-sending a replay."""
    out: list[tuple[int, HistoryEntry]] = []
    seq = 0
    start = week_of(from_date)
    for m, count in weeks:
        if m < start:
            seq += count
            continue
        bucket = load(m)
        for entry in bucket.entries if bucket else ():
            if entry.txn.date >= from_date:
                out.append((seq, entry))
            seq += 1
    return out


def find_entry(weeks: tuple[tuple[str, int], ...], load: BucketLoader, week: str, transaction_id: str) -> tuple[int, HistoryEntry] | None:
    """The transaction's (seq, entry) in `week` (whichever of its parts holds it)."""
    seq = sum(count for m, count in weeks if m < week)
    for m, _ in weeks:
        if week_of_part(m) != week:
            continue
        bucket = load(m)
        for entry in bucket.entries if bucket else ():
            if entry.txn.transaction_id == transaction_id:
                return seq, entry
            seq += 1
    return None
