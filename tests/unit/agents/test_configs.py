"""The roles' configurations come from the settings, which own every default (the domain's
config types have none for what the settings set)."""

from __future__ import annotations

from dataclasses import replace

from epochflow.agents.configs import fanout_config, scheduler_config
from epochflow.config import Settings
from epochflow.domain.fanout import FanoutConfig


def test_the_fanout_pace_comes_from_the_settings() -> None:
    assert fanout_config(Settings()) == FanoutConfig(claim_batch=4, keys_per_cycle=500, rate_per_s=2000.0,
                                                     max_in_flight=96, in_flight_timeout_s=60.0, max_attempts=5)
    tuned = fanout_config(replace(Settings(), fanout_rate_per_s=50.0, fanout_claim_batch=1, fanout_keys_per_cycle=7,
                                  fanout_max_in_flight=3, fanout_in_flight_timeout_s=9.0, max_attempts=2))
    assert tuned == FanoutConfig(claim_batch=1, keys_per_cycle=7, rate_per_s=50.0, max_in_flight=3,
                                 in_flight_timeout_s=9.0, max_attempts=2)


def test_the_scheduler_window_and_retries_come_from_the_settings() -> None:
    cfg = scheduler_config(replace(Settings(), retry_backoff_s=7.0, max_attempts=3, processing_timeout_s=11.0,
                                   scheduler_max_processing=9))
    assert (cfg.backoff_s, cfg.max_attempts, cfg.processing_timeout_s, cfg.max_processing_per_partition) == (7.0, 3, 11.0, 9)
    default = scheduler_config(Settings())
    assert (default.backoff_s, default.max_attempts, default.processing_timeout_s,
            default.max_processing_per_partition) == (60.0, 5, 60.0, 500)
