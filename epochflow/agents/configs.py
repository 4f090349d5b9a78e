"""The roles' configurations, from the settings: the settings own every default (and the
environment variable behind it); the domain's config types have none of their own."""

from __future__ import annotations

from epochflow.config import Settings
from epochflow.domain.fanout import FanoutConfig
from epochflow.domain.scheduling import SchedulerConfig


def scheduler_config(settings: Settings) -> SchedulerConfig:
    return SchedulerConfig(
        backoff_s=settings.retry_backoff_s,
        max_attempts=settings.max_attempts,
        processing_timeout_s=settings.processing_timeout_s,
        max_processing_per_partition=settings.scheduler_max_processing,
    )


def fanout_config(settings: Settings) -> FanoutConfig:
    return FanoutConfig(
        claim_batch=settings.fanout_claim_batch,
        keys_per_cycle=settings.fanout_keys_per_cycle,
        rate_per_s=settings.fanout_rate_per_s,
        max_in_flight=settings.fanout_max_in_flight,
        in_flight_timeout_s=settings.fanout_in_flight_timeout_s,
        max_attempts=settings.max_attempts,
    )
