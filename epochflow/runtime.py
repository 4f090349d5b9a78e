"""How an epochflow process runs the interpreter: what the workers (and the benchmarks'
floor, which must run as they do) set before their work starts.

The garbage collector. CPython runs a young-generation collection every 700 container
objects allocated more than freed (its default threshold). Every step builds many short-
lived objects that do not form cycles (events, frozen dataclasses of the domain core,
result rows, their JSON), so the collector ran every few trades and found nothing to
free: a quarter of the positions core's time on the floor's workload. A threshold of
10,000 lets a step's objects be freed by reference counting before a collection looks at
them; what a collection still finds (real cycles) is freed a little later. `gc.freeze()`
first moves everything made while starting (modules, the app, its tables' objects) out of
the collector's sight: it lives for the whole process, so no collection needs to walk it.
"""

from __future__ import annotations

import gc

# (young generation, middle, old): the young one's allocation count between collections,
# then how many of the previous generation's collections run one of the next
COLLECTOR_THRESHOLDS = (10_000, 10, 10)


def tune_collector() -> None:
    """Collect less often, and never walk what exists now (see the module docstring)."""
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
