"""The scheduler role's Faust app: `faust -A epochflow.apps.scheduler worker -l info` (or
`epochflow worker scheduler`)."""

from epochflow.apps import build
from epochflow.topology import ROLES

app = build(ROLES["scheduler"])
