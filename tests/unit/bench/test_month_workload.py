"""The hot-key benchmark's workload: every key's trades within one month, in time order."""

from __future__ import annotations

from collections import Counter

from epochflow.bench.workloads import month_workload


def test_every_key_s_trades_fall_in_one_month_in_time_order() -> None:
    _, hot = month_workload("H", 1, 5000)
    _, spread = month_workload("S", 100, 50)
    assert len(hot) == len(spread) == 5000
    for trades in (hot, spread):
        days = {t.transaction_date.date() for t in trades}
        assert (max(days) - min(days)).days < 31
        by_key: dict = {}
        for t in trades:
            by_key.setdefault((t.portfolio_id, t.security_id), []).append(t.transaction_date)
        assert all(stamps == sorted(stamps) and len(set(stamps)) == len(stamps) for stamps in by_key.values())
    assert set(Counter((t.portfolio_id, t.security_id) for t in spread).values()) == {50}
