"""The timeseries role's Faust app: `faust -A epochflow.apps.timeseries worker -l info` (or
`epochflow worker timeseries`)."""

from epochflow.apps import build
from epochflow.topology import ROLES

app = build(ROLES["timeseries"])
