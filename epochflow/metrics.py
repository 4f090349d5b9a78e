"""Prometheus metrics on epochflow's own registry; durations in seconds, explicit buckets.

Names follow the step vocabulary (`positions.apply` -> stage="positions.apply").
"""

from __future__ import annotations

from time import perf_counter

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter("epochflow_events_total", "Events processed, by stage", ["stage"], registry=REGISTRY)
STALE_EPOCH_DROPPED = Counter(
    "epochflow_stale_epoch_dropped_total",
    "Events or commands dropped because their epoch is older than the key's",
    ["stage"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "epochflow_dead_letter_total", "Invalid messages sent to the dead-letter topic", ["stage"], registry=REGISTRY
)
STEPS_REDONE = Counter(
    "epochflow_steps_redone_total",
    "Steps a killed worker left half written, finished from the redo journal, by stage of the next batch",
    ["stage"],
    registry=REGISTRY,
)
INPUT_HOLES = Counter(
    "epochflow_input_holes_total",
    "Input offsets a step found missing before later ones arrived; the consumer read them again, by stage",
    ["stage"],
    registry=REGISTRY,
)
INPUT_HOLES_SKIPPED = Counter(
    "epochflow_input_holes_skipped_total",
    "Input holes still there after repeated seeks back (inputs gone from the broker), taken as they are, by stage",
    ["stage"],
    registry=REGISTRY,
)
PARTITIONS_RESUMED = Counter(
    "epochflow_partitions_resumed_total",
    "Input partitions found paused after recovery ended and resumed by the worker's watchdog",
    registry=REGISTRY,
)
STALLS = Counter(
    "epochflow_stalls_total",
    "Checks that found a step running, a taken message waiting, or an input partition not moving, for over 30 s (by kind)",
    ["kind"],
    registry=REGISTRY,
)
COMMIT_SECONDS = Histogram(
    "epochflow_step_commit_seconds",
    "Time to make one batch's table writes and messages durable (journal, then tables and messages), by stage",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
EPOCH_BUMPS = Counter("epochflow_epoch_bumps_total", "Back-dated arrivals that opened a new epoch", registry=REGISTRY)
DUPLICATES = Counter("epochflow_duplicates_total", "Transactions seen again with identical content", registry=REGISTRY)
AMENDMENTS = Counter("epochflow_amendments_total", "Transactions replaced by a new version", registry=REGISTRY)
ROWS_WRITTEN = Counter("epochflow_sink_rows_total", "Rows upserted into PostgreSQL, by kind", ["kind"], registry=REGISTRY)
VERSIONS_PRUNED = Counter(
    "epochflow_versions_pruned_total", "Row versions dropped by the retention setting", registry=REGISTRY
)
SINK_RETRIES = Counter("epochflow_sink_retries_total", "Sink batches retried after a database error", registry=REGISTRY)
BATCH_SECONDS = Histogram(
    "epochflow_batch_duration_seconds",
    "Time to process one batch, by stage",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
KEYS_WAITING = Gauge(
    "epochflow_keys_waiting_for_reference", "Keys whose base-currency figures wait for FX or a portfolio",
    registry=REGISTRY,
)

JOBS = Counter(
    "epochflow_valuation_jobs_total",
    "Valuation job transitions: CREATED, DISPATCHED, COMPLETE, SKIPPED_NO_POSITION, FAILED, RETRIED (blocked on data)",
    ["event"],
    registry=REGISTRY,
)
JOB_ATTEMPTS = Histogram(
    "epochflow_valuation_job_attempts", "Attempts of a job when it was blocked on missing data",
    buckets=(1, 2, 3, 5, 8, 13, 21), registry=REGISTRY,
)
JOBS_OVER_ATTEMPTS = Counter(
    "epochflow_valuation_jobs_over_attempts_total",
    "Keys found with a job past the configured attempt limit (alert)",
    registry=REGISTRY,
)
SCHEDULER_TICK_SECONDS = Histogram(
    "epochflow_scheduler_tick_seconds", "Duration of one scheduler tick on one partition",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0), registry=REGISTRY,
)
KEYS_REPROCESSING = Gauge(
    "epochflow_keys_reprocessing", "Keys whose status is REPROCESSING (as the scheduler last saw them)",
    registry=REGISTRY,
)
REPROCESSING_OLDEST_SECONDS = Gauge(
    "epochflow_keys_reprocessing_oldest_seconds",
    "How long the key REPROCESSING the longest has been so (as the scheduler saw it)", registry=REGISTRY,
)
WATERMARK_LAG_DAYS = Gauge(
    "epochflow_watermark_lag_days", "Largest number of days a key's watermark is behind the business date",
    registry=REGISTRY,
)

# the price/FX correction fan-out
CORRECTIONS = Counter(
    "epochflow_reference_corrections_total",
    "Back-dated prices (kind=price) and FX rates (kind=fx) that raised a reprocessing trigger",
    ["kind"], registry=REGISTRY,
)
TRIGGERS_PENDING = Gauge(
    "epochflow_instrument_reprocessing_triggers_pending",
    "Instrument (or FX pair) triggers not yet queued as RESET_WATERMARKS jobs", registry=REGISTRY,
)
RESET_JOBS = Gauge(
    "epochflow_reprocessing_jobs_open", "Open RESET_WATERMARKS jobs, by status (PENDING, PROCESSING)",
    ["status"], registry=REGISTRY,
)
RESET_JOB_EVENTS = Counter(
    "epochflow_reprocessing_jobs_total", "RESET_WATERMARKS jobs CREATED, COMPLETE or FAILED",
    ["event"], registry=REGISTRY,
)
FANOUT_KEYS_RESET = Counter(
    "epochflow_fanout_keys_reset_total", "Keys sent a watermark reset by the fan-out", registry=REGISTRY,
)
FANOUT_LAG_SECONDS = Gauge(
    "epochflow_fanout_lag_seconds", "Age of the oldest open trigger or RESET_WATERMARKS job", registry=REGISTRY,
)
FANOUT_KEYS_IN_FLIGHT = Gauge(
    "epochflow_fanout_keys_in_flight", "Keys the fan-out reset that are not CURRENT again yet (its window)",
    registry=REGISTRY,
)

# measured for the whole deployment by the api role (epochflow.monitor)
CONSUMER_LAG = Gauge(
    "epochflow_consumer_lag_messages", "Messages a role's consumer group has not processed yet, by topic",
    ["role", "topic"], registry=REGISTRY,
)
DEAD_LETTER_MESSAGES = Gauge(
    "epochflow_dead_letter_messages", "Messages in the dead-letter topic (all time)", registry=REGISTRY,
)

# the per-stage budget (`epochflow bench ... --profile`): where a step's time goes, by phase
PHASES = ("decode", "domain", "table_read", "table_write", "produce", "sink")
PHASE_SECONDS = Histogram(
    "epochflow_step_phase_seconds",
    "Time one step (a batch) spent in each phase, by stage: decode (messages to models), domain (the handler "
    "and the core), table_read (table values read and decoded), table_write (values encoded and written locally, "
    "changelogs enqueued), produce (result rows encoded, messages sent, the wait until the broker has the "
    "step's records), sink (PostgreSQL)",
    ["stage", "phase"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
CHANGELOG_BYTES = Histogram(
    "epochflow_step_changelog_bytes",
    "Bytes (keys and values) one step wrote to its tables' changelogs, redo journal included, by stage",
    ["stage"],
    buckets=(1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864),
    registry=REGISTRY,
)


class StepBudget:
    """The phases of the step running now (a worker runs one step at a time), added up as
    plain floats where they happen and observed once per step: no metric call per record.
    `domain` is what the handling of the step's messages took besides the phases measured
    inside it."""

    __slots__ = ("seconds", "changelog_bytes", "_mark")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.changelog_bytes = 0
        self._mark = 0.0

    def begin(self) -> None:
        """A step starts: nothing measured before it is its."""
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.changelog_bytes = 0

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] += seconds

    def computing(self) -> None:
        """The step's messages are about to be handled."""
        self._mark = sum(self.seconds.values())

    def computed(self, seconds: float) -> None:
        """They were, in `seconds`: the part no other phase accounts for is the domain's."""
        self.seconds["domain"] += max(0.0, seconds - (sum(self.seconds.values()) - self._mark))

    def observe(self, stage: str) -> None:
        for phase, seconds in self.seconds.items():
            if phase != "sink":
                PHASE_SECONDS.labels(stage, phase).observe(seconds)
        CHANGELOG_BYTES.labels(stage).observe(self.changelog_bytes)
        self.begin()


BUDGET = StepBudget()


def decode(parse, raw):
    """`parse(raw)`, its time counted as the step's decode phase."""
    started = perf_counter()
    try:
        return parse(raw)
    finally:
        BUDGET.seconds["decode"] += perf_counter() - started
