"""The sink role's Faust app: `faust -A epochflow.apps.sink worker -l info` (or
`epochflow worker sink`)."""

from epochflow.apps import build
from epochflow.topology import ROLES

app = build(ROLES["sink"])
