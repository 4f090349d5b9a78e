"""The fanout role's Faust app: `faust -A epochflow.apps.fanout worker -l info` (or
`epochflow worker fanout`)."""

from epochflow.apps import build
from epochflow.topology import ROLES

app = build(ROLES["fanout"])
