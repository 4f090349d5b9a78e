"""What `bench fanout` reports a worker holds: read from /proc and the worker's files."""

from __future__ import annotations

import os

from epochflow.bench.footprint import footprint, footprint_table, peak_rss_bytes


def test_peak_rss_of_this_process_and_of_none() -> None:
    rss = peak_rss_bytes(os.getpid())
    assert rss is not None and rss > 10 * 2**20
    assert peak_rss_bytes(None) is None and peak_rss_bytes(2**22 + 12345) is None


def test_footprint_per_worker_and_per_key(tmp_path) -> None:
    (tmp_path / "w" / "tables").mkdir(parents=True)
    (tmp_path / "w" / "tables" / "000001.sst").write_bytes(b"x" * 5000)
    found = footprint({"workers": [{"name": "positions-0", "pid": os.getpid(), "data_dir": str(tmp_path / "w")}],
                       "embedded": {"kafka": {"pid": os.getpid()}}}, keys=100)
    [worker] = found["workers"]
    assert worker["table_bytes_per_key"] == 50 and worker["peak_rss_mb"] > 10
    assert found["broker_peak_rss_mb"] == worker["peak_rss_mb"]
    assert "positions-0" in "\n".join(footprint_table(found))
