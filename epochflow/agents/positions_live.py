"""`GET /live/positions/{portfolio_id}/{security_id}/` on any positions worker: the key's
position_state straight from the worker that owns its partition (the request is routed
there), fresher than PostgreSQL. Answers 503 until that worker's tables are recovered."""

from __future__ import annotations

from faust.exceptions import SameNode

from epochflow.app import app, settings
from epochflow.domain.keys import position_key
from epochflow.tables import positions as tables
from epochflow.web import params
from epochflow.web.access import Access
from epochflow.web.routes import ApiView, Operation, route


def describe(state) -> dict:
    return {
        "portfolio_id": state.portfolio_id, "security_id": state.security_id, "epoch": state.epoch,
        "status": state.status.value, "watermark_date": _iso(state.watermark_date),
        "latest_snapshot_date": _iso(state.latest_snapshot_date), "generation": state.generation,
        "version": state.version, "quantity": str(state.holding.quantity),
        "cost_basis": None if state.holding.cost_base is None else str(state.holding.cost_base),
        "cost_basis_local": str(state.holding.cost_local), "held_since_date": _iso(state.holding.held_since),
        "first_open_date": _iso(state.first_open_date), "last_transaction_date": _iso(state.last_transaction_date),
        "transactions": state.txn_count, "waiting_for": state.waiting_for,
    }


def _iso(day) -> str | None:
    return None if day is None else day.isoformat()


@route(
    "/live/positions/{portfolio_id}/{security_id}/",
    tag="positions",
    get=Operation(
        "A key's position state straight from the positions worker that owns it (any positions worker answers)",
        Access.READ, None,
        errors={400: "an id ingest would refuse (empty, too long, control characters, space or '|')",
                404: "no such key",
                503: "the owning worker is still recovering its tables, or unreachable during a rebalance"},
    ),
)
class LivePosition(ApiView):
    async def get(self, request, portfolio_id: str, security_id: str):
        params.identifier("portfolio_id", portfolio_id)  # an ApiError is its 400 answer
        params.identifier("security_id", security_id)
        if not app.tables.recovery.completed.is_set():
            return self.json({"error": "this worker is still recovering its tables; try again shortly"}, status=503)
        key = position_key(portfolio_id, security_id)
        try:
            return await app.router.route_req(tables.STATE.main.table.name, key.encode(), self.web, request)
        except SameNode:
            pass
        except Exception as error:  # no assignment yet (rebalancing) or the owner is unreachable
            return self.json({"error": f"cannot reach the worker that owns {key!r}: {error!r}"}, status=503)
        state = tables.STATE.get(key)
        if state is None:
            return self.json({"error": f"no position {key!r}"}, status=404)
        return self.json({**describe(state), "served_by": f"{settings.web_host}:{settings.web_port}"})
