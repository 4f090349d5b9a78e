"""The valuation role's Faust app: `faust -A epochflow.apps.valuation worker -l info` (or
`epochflow worker valuation`)."""

from epochflow.apps import build
from epochflow.topology import ROLES

app = build(ROLES["valuation"])
