"""Web views every role serves: health, Prometheus metrics and `POST /ingest`."""

from __future__ import annotations

import json

from faust.web import View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from epochflow.app import ROLE, app, settings
from epochflow.metrics import REGISTRY
from epochflow.schemas.events import InvalidEvent, parse_event
from epochflow.streams.publish import publish

MAX_BODY_BYTES = 16 * 1024 * 1024


@app.page("/health/")
async def health(web, request):
    return web.json({"role": ROLE, "app": app.conf.id, "status": "ok"})


@app.page("/metrics/")
async def metrics_view(web, request):
    return web.bytes(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def events_from_body(doc) -> list:
    """A scenario file, a list of events or a single event."""
    if isinstance(doc, dict) and "cases" in doc:
        return [e for case in doc["cases"] for e in case.get("events", [])]
    if isinstance(doc, dict) and "events" in doc:
        return list(doc["events"])
    if isinstance(doc, list):
        return doc
    return [doc]


def validate_all(raw_events: list) -> tuple[list, list[dict]]:
    parsed, errors = [], []
    for index, raw in enumerate(raw_events):
        try:
            parsed.append(parse_event(raw))
        except InvalidEvent as error:
            errors.append({"index": index, "reason": error.reason})
    return parsed, errors


@app.page("/ingest/")
class Ingest(View):
    """POST events (a scenario file, a list or one event): all are validated first; any
    invalid one answers 422 with its index, field and reason, and nothing is published."""

    async def get(self, request):
        return self.json({"error": "POST events as JSON"}, status=405)

    async def post(self, request):
        body = await request.read()
        if len(body) > MAX_BODY_BYTES:
            return self.json({"error": f"body larger than {MAX_BODY_BYTES} bytes"}, status=413)
        try:
            doc = json.loads(body)
        except ValueError as error:
            return self.json({"error": f"body is not JSON: {error}"}, status=422)
        parsed, errors = validate_all(events_from_body(doc))
        if errors:
            return self.json({"error": "invalid events; nothing was published", "invalid": errors}, status=422)

        async def send(topic: str, partition: int, key: bytes, value: bytes):
            await app.producer.send(topic, key, value, partition=partition, timestamp=None, headers=None)

        count = await publish(parsed, settings, send)
        await app.producer.flush()
        return self.json({"published": count})


_engine = None


def _database():
    global _engine
    if _engine is None:
        from epochflow.sinks.schema import create_engine

        _engine = create_engine(settings.database_url, pool_size=2)
    return _engine


def _jsonable(row: dict) -> dict:
    return {k: (str(v) if v is not None and not isinstance(v, (str, int, bool)) else v) for k, v in row.items()}


@app.page("/portfolios/{portfolio_id}/positions/")
class PortfolioPositions(View):
    """The portfolio's positions, current epoch only, with `reprocessing_status`."""

    async def get(self, request, portfolio_id: str):
        if not settings.database_url:
            return self.json({"error": "no database configured (DATABASE_URL)"}, status=503)
        from epochflow.sinks.reads import portfolio_positions

        rows = await portfolio_positions(_database(), portfolio_id)
        if not rows:
            return self.json({"error": f"portfolio {portfolio_id!r} has no positions"}, status=404)
        return self.json({"portfolio_id": portfolio_id, "positions": [_jsonable(r) for r in rows]})


def _page_params(request) -> tuple[int, int]:
    """`limit` (1..1000, default 100) and `offset` (>= 0) of a list view; ValueError says why."""
    try:
        limit = int(request.query.get("limit", "100"))
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        raise ValueError("limit and offset must be integers") from None
    if not 1 <= limit <= 1000 or offset < 0:
        raise ValueError("limit must be 1..1000 and offset >= 0")
    return limit, offset


RESET_JOB_STATUSES = ("PENDING", "PROCESSING", "COMPLETE", "FAILED")


@app.page("/reprocessing/jobs/")
class ReprocessingJobs(View):
    """The fan-out's RESET_WATERMARKS jobs, newest first; filters `status`, `security_id`,
    `subject` (price|SECURITY or fx|FROM|TO); paging `limit`, `offset`."""

    async def get(self, request):
        if not settings.database_url:
            return self.json({"error": "no database configured (DATABASE_URL)"}, status=503)
        from epochflow.sinks.reads import fanout_progress, fetch_reprocessing_jobs

        status = request.query.get("status")
        if status is not None and status not in RESET_JOB_STATUSES:
            return self.json({"error": f"status must be one of {', '.join(RESET_JOB_STATUSES)}"}, status=400)
        try:
            limit, offset = _page_params(request)
        except ValueError as error:
            return self.json({"error": str(error)}, status=400)
        jobs = await fetch_reprocessing_jobs(_database(), security_id=request.query.get("security_id"), status=status,
                                             subject=request.query.get("subject"), limit=limit, offset=offset)
        return self.json({"progress": await fanout_progress(_database()), "limit": limit, "offset": offset,
                          "jobs": [_jsonable(j.model_dump(exclude={"kind"})) for j in jobs]})


@app.page("/reprocessing/triggers/")
class ReprocessingTriggers(View):
    """The fan-out's pending triggers (all of them, queued ones too, with `?all=true`)."""

    async def get(self, request):
        if not settings.database_url:
            return self.json({"error": "no database configured (DATABASE_URL)"}, status=503)
        from epochflow.sinks.reads import fetch_reprocessing_triggers

        every = request.query.get("all", "false")
        if every not in ("true", "false"):
            return self.json({"error": "all must be true or false"}, status=400)
        triggers = await fetch_reprocessing_triggers(_database(), pending_only=every == "false")
        return self.json({"triggers": [_jsonable(t.model_dump(exclude={"kind"})) for t in triggers]})
