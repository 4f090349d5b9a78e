"""The dashboard's sampling ring buffer and the shaping of what it reads into panels and
chart series (`epochflow/web/dashboard.py`); the page itself is checked for being
self-contained. No broker, no database: readings and consumers are made up here."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from types import SimpleNamespace

import pytest

from tests.fixtures.agents import load_app

load_app("api")  # before the dashboard module imports epochflow.app

from epochflow.sinks.dashboard_reads import (  # noqa: E402
    DatabaseReading,
    KeyGroup,
    ResetJob,
    ResetJobCount,
    TableStats,
    ValuationJobGroup,
)
from epochflow.web import dashboard  # noqa: E402
from epochflow.web.dashboard import (  # noqa: E402
    DeadLetterWatch,
    Sample,
    Sampler,
    SampleRing,
    dashboard_payload,
    dead_letter_entry,
    fanout_progress,
    infer_business_date,
    key_counts,
    page_html,
    reprocessing_queue,
    shape_panels,
    spread,
    throughput,
    valuation_queue,
    watermark_lag,
)

BD = date(2026, 3, 20)
T0 = 1_800_000_000.0


def sample(at: float, *, current: int | None = 1, rows: dict[str, int] | None = None, dead: int | None = 0,
           errors: dict[str, str] | None = None, previous: Sample | None = None) -> Sample:
    panels = None if current is None else {
        "keys": {"total": current, "by_status": {"CURRENT": current, "REPROCESSING": 0}, "waiting_for_data": 0},
    }
    return Sample(at=at, duration_s=0.01, panels=panels, rows_written=rows,
                  throughput=throughput(previous, rows, at), dead_letters=None if dead is None else {"count": dead},
                  errors=errors or {})


def job(job_id: str, status: str, reset: int, total: int, attempts: int = 1) -> ResetJob:
    return ResetJob(job_id=job_id, subject="price|SEC", partition=0, status=status, keys_reset=reset,
                    keys_total=total, attempt_count=attempts, earliest_impacted_date=date(2026, 3, 10),
                    created_at=datetime(2026, 3, 20, 9, tzinfo=timezone.utc), finished_at=None, failure_reason=None)


def reading(**changes) -> DatabaseReading:
    base = dict(
        key_groups=(KeyGroup("CURRENT", BD, 8, 0), KeyGroup("REPROCESSING", date(2026, 3, 15), 2, 1)),
        valuation_jobs=(ValuationJobGroup("COMPLETE", False, 40, BD),
                        ValuationJobGroup("PENDING", False, 3, date(2026, 3, 18)),
                        ValuationJobGroup("PENDING", True, 1, date(2026, 3, 17))),
        valuation_counts_exact=True,
        reset_jobs={"PROCESSING": ResetJobCount(1, 120, 500), "COMPLETE": ResetJobCount(2, 40, 40)},
        triggers_pending=1,
        open_reset_jobs=(job("J1", "PROCESSING", 120, 500),),
        finished_reset_jobs=(job("J0", "COMPLETE", 20, 20),),
        tables={"transactions": TableStats(100, 90), "portfolio_valuation_jobs": TableStats(60, 44)},
    )
    base.update(changes)
    return DatabaseReading(**base)


# -- the ring buffer ------------------------------------------------------------------------


def test_the_ring_keeps_thirty_minutes_of_two_second_samples_by_default() -> None:
    ring = SampleRing()
    assert ring.capacity == 901
    for i in range(1000):
        ring.append(sample(T0 + 2 * i))
    assert len(ring) == 901
    assert ring.samples()[0].at == T0 + 2 * 99 and ring.latest().at == T0 + 2 * 999


def test_the_ring_forgets_samples_older_than_its_window_even_below_capacity() -> None:
    ring = SampleRing(window_s=60, interval_s=2)
    ring.append(sample(T0))
    ring.append(sample(T0 + 30))
    ring.append(sample(T0 + 61))  # a slow sampler: T0 is now out of the window
    assert [s.at for s in ring.samples()] == [T0 + 30, T0 + 61]


def test_latest_can_skip_samples_that_failed_to_read_a_source() -> None:
    ring = SampleRing(window_s=60, interval_s=2)
    ring.append(sample(T0, current=5))
    ring.append(sample(T0 + 2, current=None, errors={"database": "down"}))
    assert ring.latest().panels is None
    assert ring.latest(lambda s: s.panels is not None).at == T0


@pytest.mark.parametrize("count,max_points", [(0, 10), (5, 10), (10, 10), (11, 10), (901, 450), (901, 2), (7, 1)])
def test_spread_picks_evenly_spaced_indices_keeping_the_newest(count: int, max_points: int) -> None:
    picked = spread(count, max_points)
    assert len(picked) == min(count, max_points)
    assert picked == sorted(set(picked)) and all(0 <= i < count for i in picked)
    if count:
        assert picked[-1] == count - 1
        if max_points > 1:
            assert picked[0] == 0


def test_series_are_aligned_on_time_with_gaps_where_a_source_failed() -> None:
    ring = SampleRing(window_s=60, interval_s=2)
    first = sample(T0, current=3, rows={"transactions": 10})
    ring.append(first)
    second = sample(T0 + 2, current=None, rows=None, dead=None, errors={"database": "down", "dead_letters": "down"})
    ring.append(second)
    ring.append(sample(T0 + 4, current=4, rows={"transactions": 30}, dead=2, previous=first))
    series = ring.series()
    assert series["t"] == [T0, T0 + 2, T0 + 4]
    assert series["keys_current"] == [3, None, 4]
    assert series["dead_letters"] == [0, None, 2]
    assert series["rows_per_s"] == [None, None, 5.0]  # 20 rows over the 4 s since the last reading
    assert set(series) == {"t", *dashboard.HISTORY_SERIES}
    assert len(ring.series(max_points=2)["t"]) == 2


# -- shaping ----------------------------------------------------------------------------------


def test_throughput_is_the_change_of_the_write_counters_per_second() -> None:
    first = sample(T0, rows={"transactions": 100, "position_state": 50})
    assert first.throughput["rows_per_s"] is None and first.throughput["rows_written"] == 150
    later = throughput(first, {"transactions": 140, "position_state": 30, "daily_position_snapshots": 9}, T0 + 4)
    # position_state went backwards (statistics reset): zero, never negative; a new table starts at zero
    assert later["by_table"]["transactions"]["rows_per_s"] == 10.0
    assert later["by_table"]["position_state"]["rows_per_s"] == 0.0
    assert later["by_table"]["daily_position_snapshots"]["rows_per_s"] == 0.0
    assert later["rows_per_s"] == 10.0 and later["interval_s"] == 4.0 and later["rows_written"] == 179
    assert throughput(first, None, T0 + 4) is None


def test_the_business_date_is_the_latest_watermark_or_open_job() -> None:
    groups = (KeyGroup("CURRENT", date(2026, 3, 18), 1, 0), KeyGroup("CURRENT", None, 1, 0))
    jobs = (ValuationJobGroup("PENDING", False, 1, date(2026, 3, 19)),
            ValuationJobGroup("COMPLETE", False, 1, date(2026, 3, 25)))  # an old epoch's dates do not count
    assert infer_business_date(groups, jobs) == date(2026, 3, 19)
    assert infer_business_date(groups, ()) == date(2026, 3, 18)
    assert infer_business_date((), ()) is None


def test_keys_by_status_always_name_current_and_reprocessing() -> None:
    assert key_counts(()) == {"total": 0, "by_status": {"CURRENT": 0, "REPROCESSING": 0}, "waiting_for_data": 0}
    counted = key_counts(reading().key_groups)
    assert counted == {"total": 10, "by_status": {"CURRENT": 8, "REPROCESSING": 2}, "waiting_for_data": 1}


def test_watermark_lag_buckets_days_behind_and_counts_unvalued_keys_apart() -> None:
    groups = (
        KeyGroup("CURRENT", BD, 5, 0),
        KeyGroup("REPROCESSING", date(2026, 3, 19), 1, 0),
        KeyGroup("REPROCESSING", date(2026, 3, 17), 2, 0),
        KeyGroup("REPROCESSING", date(2025, 12, 1), 1, 0),  # 109 days
        KeyGroup("REPROCESSING", None, 3, 0),
    )
    lag = watermark_lag(groups, BD)
    assert (lag["max_days"], lag["keys_behind"], lag["unvalued"], lag["business_date"]) == (109, 4, 3, "2026-03-20")
    assert {b["label"]: b["keys"] for b in lag["buckets"]} == {
        "0": 5, "1": 1, "2-3": 2, "4-7": 0, "8-30": 0, "31-90": 0, "> 90": 1}
    unknown = watermark_lag(groups, None)
    assert unknown["max_days"] is None and unknown["unvalued"] == 12


def test_valuation_queue_splits_pending_into_runnable_and_blocked() -> None:
    queue = valuation_queue(reading().valuation_jobs, exact=True)
    assert (queue["runnable"], queue["blocked"], queue["processing"], queue["open"]) == (3, 1, 0, 4)
    assert queue["by_status"] == {"PENDING": 4, "PROCESSING": 0, "COMPLETE": 40, "SKIPPED_NO_POSITION": 0, "FAILED": 0}


def test_a_large_job_table_counts_only_open_and_failed_jobs_and_estimates_the_rest() -> None:
    groups = (ValuationJobGroup("PENDING", False, 3, None), ValuationJobGroup("FAILED", False, 2, None))
    queue = valuation_queue(groups, exact=False, live_rows=1_000_000)
    assert queue["by_status"]["COMPLETE"] is None and queue["by_status"]["FAILED"] == 2
    assert queue["finished_estimate"] == 999_995 and queue["exact"] is False


def test_reprocessing_queue_names_every_status() -> None:
    queue = reprocessing_queue({"PENDING": ResetJobCount(2, 0, 0)}, triggers_pending=3)
    assert queue == {"jobs_by_status": {"PENDING": 2, "PROCESSING": 0, "COMPLETE": 0, "FAILED": 0},
                     "open": 2, "triggers_pending": 3}


def test_fanout_progress_sums_open_jobs_and_gives_each_job_its_fraction() -> None:
    r = reading(open_reset_jobs=(job("J1", "PROCESSING", 120, 500), job("J2", "PENDING", 0, 0)),
                reset_jobs={"PROCESSING": ResetJobCount(1, 120, 500), "PENDING": ResetJobCount(1, 0, 0),
                            "COMPLETE": ResetJobCount(5, 9, 9)})
    progress = fanout_progress(r.reset_jobs, r.open_reset_jobs, r.finished_reset_jobs)
    assert (progress["open_jobs"], progress["keys_reset"], progress["keys_total"], progress["fraction"]) == (2, 120, 500, 0.24)
    assert [(j["job_id"], j["fraction"]) for j in progress["open"]] == [("J1", 0.24), ("J2", None)]  # no total yet
    assert [(j["job_id"], j["fraction"]) for j in progress["recent"]] == [("J0", 1.0)]


def test_shape_panels_is_json_ready() -> None:
    panels = shape_panels(reading())
    assert panels["business_date"] == "2026-03-20"
    assert json.loads(json.dumps(panels)) == panels


def test_a_dead_letter_is_shown_by_stage_and_reason_and_anything_else_as_it_is() -> None:
    record = {"stage": "positions.apply", "reason": "transaction_date: field required", "topic": "t.transactions",
              "partition": 2, "offset": 7, "raw": "x" * 1000, "at": "2026-03-20T10:00:00+00:00"}
    entry = dead_letter_entry(json.dumps(record).encode(), 41)
    assert (entry["offset"], entry["stage"], entry["reason"], entry["source"]) == (
        41, "positions.apply", "transaction_date: field required", "t.transactions[2]@7")
    assert len(entry["raw"]) == dashboard.TEXT_LIMIT and entry["raw"].endswith("…")
    odd = dead_letter_entry(b"\xffnot json", 3)
    assert odd["reason"] == "not a dead-letter record" and odd["raw"].endswith("not json")
    assert dead_letter_entry(None, 0)["raw"] == ""


# -- data.json --------------------------------------------------------------------------------


def test_the_payload_of_an_empty_ring_says_it_is_stale_and_has_no_panels() -> None:
    payload = dashboard_payload(SampleRing(), T0)
    assert payload["sampler"]["stale"] is True and payload["sampler"]["samples"] == 0
    assert payload["keys"] is None and payload["errors"] == {}
    assert payload["history"]["t"] == []


def test_the_payload_keeps_the_last_good_figures_and_reports_the_newest_errors() -> None:
    ring = SampleRing(window_s=60, interval_s=2)
    good = sample(T0, current=7, rows={"transactions": 1}, dead=3)
    ring.append(good)
    ring.append(sample(T0 + 2, current=None, rows=None, dead=None, errors={"database": "OSError: refused"}))
    payload = dashboard_payload(ring, T0 + 3)
    assert payload["keys"]["by_status"]["CURRENT"] == 7
    assert payload["database_as_of"] == datetime.fromtimestamp(T0, timezone.utc).isoformat(timespec="seconds")
    assert payload["errors"] == {"database": "OSError: refused"}
    assert payload["dead_letters"] == {"count": 3}
    assert payload["sampler"]["stale"] is False
    assert dashboard_payload(ring, T0 + 60)["sampler"]["stale"] is True
    json.dumps(payload)


# -- the sampler and the dead-letter watch, with stand-ins --------------------------------------


async def test_a_sample_reads_the_database_and_records_what_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [T0]
    sampler = Sampler("postgresql://nowhere/db", "", "p.dead-letter", SampleRing(60, 2), clock=lambda: now[0])

    async def read() -> DatabaseReading:
        return reading()

    monkeypatch.setattr(sampler, "_read_database", read)
    first = await sampler.sample_once()
    assert first.panels["keys"]["total"] == 10
    assert first.errors == {"dead_letters": "no broker configured (EPOCHFLOW_KAFKA_URL)"}

    async def broken() -> DatabaseReading:
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(sampler, "_read_database", broken)
    now[0] += 2
    second = await sampler.sample_once()
    assert second.panels is None and second.errors["database"] == "ConnectionRefusedError: connection refused"
    payload = await sampler.payload()
    assert payload["keys"]["total"] == 10 and "database" in payload["errors"]
    assert payload["history"]["keys_current"] == [8, None]


async def test_the_first_request_of_a_fresh_worker_takes_a_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = Sampler("", "", "p.dead-letter", SampleRing(60, 2), clock=lambda: T0)
    payload = await sampler.payload()
    assert payload["sampler"]["samples"] == 1
    assert payload["errors"]["database"] == "no database configured (DATABASE_URL)"


class FakeConsumer:
    """What DeadLetterWatch uses of AIOKafkaConsumer."""

    def __init__(self, **options) -> None:
        self.options = options
        self.highwater_ = 12
        self.start_ = 2
        self.polled_ms = T0 * 1000
        self.buffered = [SimpleNamespace(offset=o, value=json.dumps({"stage": "s", "reason": f"r{o}"}).encode())
                         for o in range(7, 12)]
        self.stopped = False
        self.seeked = None

    async def start(self) -> None: ...

    async def stop(self) -> None:
        self.stopped = True

    async def topics(self) -> set[str]:
        return {"p.dead-letter"}

    def assign(self, partitions) -> None: ...

    async def beginning_offsets(self, partitions):
        return {tp: self.start_ for tp in partitions}

    async def end_offsets(self, partitions):
        return {tp: self.highwater_ - 1 for tp in partitions}  # as the embedded broker: a batch short

    def seek(self, tp, offset) -> None:
        self.seeked = offset

    async def getmany(self, tp, timeout_ms=0):
        records, self.buffered = self.buffered, []
        return {tp: records} if records else {}

    def highwater(self, tp) -> int:
        return self.highwater_

    def last_poll_timestamp(self, tp) -> float:
        return self.polled_ms


async def test_the_dead_letter_count_is_the_topic_size_with_the_latest_records_first() -> None:
    consumers: list[FakeConsumer] = []

    def factory(**options) -> FakeConsumer:
        consumers.append(FakeConsumer(**options))
        return consumers[-1]

    watch = DeadLetterWatch("127.0.0.1:1", "p.dead-letter", recent=3, consumer_factory=factory)
    seen = await watch.read(T0 + 1)
    consumer = consumers[0]
    assert consumer.options["group_id"] is None and consumer.seeked == 11 - 3
    assert (seen["count"], seen["high_watermark"], seen["stale"]) == (10, 12, False)
    assert [r["offset"] for r in seen["recent"]] == [11, 10, 9]
    consumer.highwater_ = 13
    consumer.buffered = [SimpleNamespace(offset=12, value=b'{"stage": "s", "reason": "late"}')]
    later = await watch.read(T0 + 3)
    assert later["count"] == 11 and later["recent"][0]["reason"] == "late"
    assert (await watch.read(T0 + 60))["stale"] is True  # no fetch response for a minute
    await watch.close()
    assert consumer.stopped


async def test_a_missing_dead_letter_topic_is_an_error_not_a_new_topic() -> None:
    class NoTopic(FakeConsumer):
        async def topics(self) -> set[str]:
            return set()

    made: list[FakeConsumer] = []
    watch = DeadLetterWatch("127.0.0.1:1", "p.dead-letter", consumer_factory=lambda **o: made.append(NoTopic(**o)) or made[-1])
    with pytest.raises(LookupError, match="p.dead-letter does not exist"):
        await watch.read(T0)
    assert made[0].stopped and made[0].seeked is None


# -- the page --------------------------------------------------------------------------------


PANELS = ("keys-by-status", "valuation-queue", "reprocessing-queue", "watermark-lag", "fanout-progress",
          "throughput", "dead-letters")


def test_the_page_has_every_panel_with_a_heading() -> None:
    html = page_html()
    for panel in PANELS:
        assert re.search(rf'<section class="panel" id="{panel}"><h2>[^<]+</h2>', html), panel
    for element in ("status", "last-refresh", "business-date"):
        assert f'id="{element}"' in html


def test_the_page_is_self_contained_and_never_injects_markup() -> None:
    html = page_html()
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', html, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", html, re.I)
    assert "<script src" not in html and '<link rel="stylesheet"' not in html
    assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", html)
    assert "data.json" in html
