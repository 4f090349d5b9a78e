"""The roles of epochflow, in one place: for each, the modules that declare its agents,
tables and views on its Faust app, the topics it consumes, its app id (also its consumer
group), and whether a replay from empty tables rebuilds what it built the first time.

Each role runs as its own Faust app (`epochflow.apps.<role>`) in its own worker processes
and scales by partitions; roles talk only through topics.
"""

from __future__ import annotations

from dataclasses import dataclass

from epochflow.config import Settings


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    modules: tuple[str, ...]  # imported by the role's app: they declare its agents, tables, views
    inputs: tuple[str, ...] = ()  # short names of the topics its agents consume (streams.names)
    # Reads the positions role's rows from the results topic and forwards their barriers
    # (see epochflow.client): the stages a barrier passes through.
    forwards_barriers: bool = False
    # Why a replay from the earliest offsets with its tables reset does not rebuild the
    # same results (None: it does). Such a replay needs --force (see epochflow.ops.replay).
    rebuild_differs: str | None = None

    def app_id(self, settings: Settings) -> str:
        """The Faust app id of the role, which is also its consumer group id."""
        return app_id(settings, self.name)

    @property
    def replayable(self) -> bool:
        """A role that consumes no topic has nothing to replay."""
        return bool(self.inputs)


def app_id(settings: Settings, role: str) -> str:
    return f"{settings.topic_prefix}-{role}"


_ROLES = (
    Role(
        "positions",
        ("epochflow.agents.positions", "epochflow.agents.positions_live"),
        ("transactions", "reference", "position-commands"),
        rebuild_differs=(
            "a key's epochs depend on the order in which its transactions and the scheduler's "
            "position-commands arrived, and a replay reads those topics again in another order: a key "
            "comes back in another epoch than PostgreSQL, the scheduler and valuation hold (a lower one "
            "is ignored by them from then on)"
        ),
    ),
    Role(
        "scheduler",
        ("epochflow.agents.scheduler",),
        ("results", "reference", "scheduler-ticks"),
        forwards_barriers=True,
        rebuild_differs=(
            "the replayed scheduler dispatches again jobs of days the first run valued and drops them "
            "when the replayed position states move past those days: they stay PROCESSING in "
            "portfolio_valuation_jobs (under a higher version than the completed job), and the "
            "pipeline never looks quiescent again"
        ),
    ),
    Role("valuation", ("epochflow.agents.valuation",), ("results", "reference", "valuation-jobs"), forwards_barriers=True),
    Role("fanout", ("epochflow.agents.fanout",), ("results", "reference", "fanout-ticks"), forwards_barriers=True),
    # cash flows, position and portfolio time series; its series step is keyed by portfolio
    Role("timeseries", ("epochflow.agents.timeseries",), ("results", "reference", "portfolio-changes"),
         forwards_barriers=True),
    Role("sink", ("epochflow.agents.sink",), ("results",)),
    # the operations dashboard and deployment-wide gauges (every role serves epochflow.web.views)
    Role("api", ("epochflow.web.dashboard.views", "epochflow.monitor")),
)

ROLES: dict[str, Role] = {role.name: role for role in _ROLES}  # in start order
ROLE_NAMES: tuple[str, ...] = tuple(ROLES)
REPLAYABLE: tuple[str, ...] = tuple(name for name, role in ROLES.items() if role.replayable)
# what every role runs besides its own modules: the web views, the watchdog on its progress
EVERY_ROLE = ("epochflow.web.views", "epochflow.streams.watchdog")


def role(name: str) -> Role:
    """The role named `name`; an unknown name is refused with the list of roles."""
    try:
        return ROLES[name]
    except KeyError:
        raise ValueError(f"unknown role {name!r}; roles are: {', '.join(ROLES)}") from None
