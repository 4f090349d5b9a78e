"""Which modules make up each role: importing them declares the role's topics, tables,
agents and views on the role's Faust app."""

from __future__ import annotations

import importlib

ROLE_MODULES: dict[str, tuple[str, ...]] = {
    "positions": ("epochflow.agents.positions", "epochflow.agents.positions_live"),
    "scheduler": ("epochflow.agents.scheduler",),
    "valuation": ("epochflow.agents.valuation",),
    "fanout": ("epochflow.agents.fanout",),
    "sink": ("epochflow.agents.sink",),
    "api": ("epochflow.web.dashboard.views", "epochflow.monitor"),  # the web views every role serves, the operations dashboard, deployment-wide gauges
    "naive": ("epochflow.agents.naive",),  # benchmark baseline, started only by `epochflow bench ingest`
}


def load_role(role: str):
    if role not in ROLE_MODULES:
        raise SystemExit(f"unknown role {role!r}; roles are: {', '.join(ROLE_MODULES)}")
    for module in ROLE_MODULES[role] + ("epochflow.web.views",):
        importlib.import_module(module)
    from epochflow.app import app

    return app
