"""The positions role's Faust app: `faust -A epochflow.apps.positions worker -l info` (or
`epochflow worker positions`)."""

from epochflow.apps import build
from epochflow.topology import ROLES

app = build(ROLES["positions"])
