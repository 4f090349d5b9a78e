"""`bench ... --profile`: the per-stage budget of a timed run. Every worker serves its
Prometheus metrics (`/metrics/`); the run reads them before and after, and the difference
of the step phase histograms (`epochflow_step_phase_seconds`, `epochflow_step_changelog_bytes`,
see epochflow.metrics) is where the time went, stage by stage."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from epochflow.metrics import PHASES

PHASE_METRIC = "epochflow_step_phase_seconds"
BYTES_METRIC = "epochflow_step_changelog_bytes"


@dataclass
class StageBudget:
    stage: str
    steps: int = 0  # batches (the count of the stage's slowest-counted phase histogram)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    changelog_bytes: float = 0.0

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())

    def as_dict(self) -> dict:
        return {**asdict(self), "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
                "total_s": round(self.total_s, 4)}


Sums = dict[tuple[str, str, str], float]  # (metric sample name, stage, phase) -> value, over workers


def sums(texts: Iterable[str]) -> Sums:
    """The `_sum` and `_count` samples of the budget's histograms in some workers' metrics,
    added up across workers."""
    found: Sums = defaultdict(float)
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name not in (PHASE_METRIC, BYTES_METRIC):
                continue
            for sample in family.samples:
                if sample.name.endswith(("_sum", "_count")):
                    found[(sample.name, sample.labels.get("stage", ""), sample.labels.get("phase", ""))] += sample.value
    return found


def budget(before: Sums, after: Sums) -> list[StageBudget]:
    """Per stage, what the run added to each phase (and to the changelogs), busiest first."""
    stages: dict[str, StageBudget] = {}
    for (name, stage, phase), value in after.items():
        delta = value - before.get((name, stage, phase), 0.0)
        if delta <= 0:
            continue
        row = stages.setdefault(stage, StageBudget(stage))
        if name == f"{PHASE_METRIC}_sum" and phase in row.seconds:
            row.seconds[phase] += delta
        elif name == f"{PHASE_METRIC}_count":
            row.steps = max(row.steps, int(delta))
        elif name == f"{BYTES_METRIC}_sum":
            row.changelog_bytes += delta
    return sorted(stages.values(), key=lambda row: (-row.total_s, row.stage))


def table(rows: list[StageBudget]) -> list[str]:
    """The budget as text lines: seconds per phase and stage, a total line with each
    phase's share of the whole."""
    header = f"  {'stage':<22}{'steps':>7}" + "".join(f"{phase:>12}" for phase in PHASES) + f"{'total s':>10}{'changelog MB':>14}"
    lines = [header]
    for row in rows:
        lines.append(f"  {row.stage:<22}{row.steps:>7}" + "".join(f"{row.seconds[p]:>12.3f}" for p in PHASES)
                     + f"{row.total_s:>10.3f}{row.changelog_bytes / 1e6:>14.2f}")
    totals = {p: sum(row.seconds[p] for row in rows) for p in PHASES}
    whole = sum(totals.values())
    lines.append(f"  {'all stages':<22}{sum(r.steps for r in rows):>7}" + "".join(f"{totals[p]:>12.3f}" for p in PHASES)
                 + f"{whole:>10.3f}{sum(r.changelog_bytes for r in rows) / 1e6:>14.2f}")
    if whole > 0:
        lines.append(f"  {'share':<29}" + "".join(f"{totals[p] / whole:>12.0%}" for p in PHASES))
    return lines


async def scrape(ports: Mapping[str, int], host: str = "127.0.0.1", timeout_s: float = 10.0) -> dict[str, str]:
    """Each worker's metrics text, by worker name (`ports`: worker name -> web port)."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        async def one(port: int) -> str:
            async with session.get(f"http://{host}:{port}/metrics/") as response:
                response.raise_for_status()
                return await response.text()

        names = list(ports)
        texts = await asyncio.gather(*(one(ports[name]) for name in names))
    return dict(zip(names, texts, strict=True))


class Profiler:
    """Reads a stack's workers' budgets around a timed run (does nothing when off)."""

    def __init__(self, stack, enabled: bool) -> None:
        self.ports = {w.name: w.web_port for w in stack.workers} if enabled else {}
        self.before: Sums = {}

    @property
    def enabled(self) -> bool:
        return bool(self.ports)

    async def start(self) -> None:
        if self.enabled:
            self.before = sums((await scrape(self.ports)).values())

    async def stop(self, echo, title: str) -> list[dict] | None:
        """The budget since `start`, printed as a table; None when off."""
        if not self.enabled:
            return None
        rows = budget(self.before, sums((await scrape(self.ports)).values()))
        echo(f"  profile: {title} (seconds per stage and phase, summed over the stage's steps)")
        for line in table(rows):
            echo(line)
        return [row.as_dict() for row in rows]
