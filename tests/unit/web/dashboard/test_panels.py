"""The dashboard's pure part (`epochflow/web/dashboard/panels.py`): the sampling ring
buffer and the shaping of what the sampler reads into panels, chart series and data.json.
No broker, no database, no Faust app: readings are made up here."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime

import pytest

from epochflow.sinks.reads.dashboard import KeyGroup, ResetJobCount, ValuationJobGroup
from epochflow.web.dashboard import panels
from epochflow.web.dashboard.panels import (
    SampleRing,
    dashboard_payload,
    dead_letter_entry,
    fanout_progress,
    infer_business_date,
    key_counts,
    reprocessing_queue,
    shape_panels,
    spread,
    throughput,
    valuation_queue,
    watermark_lag,
)
from tests.unit.web.dashboard.readings import BD, T0, job, reading, sample


def test_panels_load_without_faust_or_the_app() -> None:
    probe = (
        "import sys, epochflow.web.dashboard.panels; "
        "loaded = [m for m in ('faust', 'mode', 'aiokafka', 'epochflow.app') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


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
    assert set(series) == {"t", *panels.HISTORY_SERIES}
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
    assert len(entry["raw"]) == panels.TEXT_LIMIT and entry["raw"].endswith("…")
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
    assert payload["database_as_of"] == datetime.fromtimestamp(T0, UTC).isoformat(timespec="seconds")
    assert payload["errors"] == {"database": "OSError: refused"}
    assert payload["dead_letters"] == {"count": 3}
    assert payload["sampler"]["stale"] is False
    assert dashboard_payload(ring, T0 + 60)["sampler"]["stale"] is True
    json.dumps(payload)


def test_an_opened_epoch_links_to_why_its_first_rebuilt_day_changed() -> None:
    from epochflow.sinks.reads.dashboard import OpenedEpoch

    opened = OpenedEpoch("P 1", "S/1", 2, "T9", date(2026, 3, 4), "REPROCESSING", datetime(2026, 3, 20, 9, tzinfo=UTC))
    shaped = panels.shape_panels(reading(opened_epochs=(opened,)))["opened_epochs"]
    assert shaped == [{"portfolio_id": "P 1", "security_id": "S/1", "epoch": 2, "transaction_id": "T9",
                       "rebuilt_from": "2026-03-04", "status": "REPROCESSING", "at": "2026-03-20T09:00:00+00:00",
                       "changes_url": "/positions/P%201/S%2F1/changes/?date=2026-03-04"}]
