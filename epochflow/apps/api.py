"""The api role's Faust app: `faust -A epochflow.apps.api worker -l info` (or
`epochflow worker api`)."""

from epochflow.apps import build
from epochflow.topology import ROLES

app = build(ROLES["api"])
