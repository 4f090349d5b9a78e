"""Web views every role serves: health, Prometheus metrics, `POST /ingest` (JSON or CSV),
and (from `epochflow.web.api`) the read API with its OpenAPI document and (`epochflow.web.docs`)
its interactive page.

Every route goes through the route registry (`epochflow.web.routes.route`), which
documents it; the access guard (`epochflow.web.access`) sits in front of all of them.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from epochflow.app import ROLE, app, settings
from epochflow.metrics import REGISTRY
from epochflow.schemas.documents import DocumentError, load_json
from epochflow.schemas.events import CheckpointEvent, InvalidEvent, parse_event
from epochflow.schemas.tabular import EVENT_FIELDS, MEDIA_TYPE, Table, read_csv, split_problem, unknown_type
from epochflow.streams.publish import publish
from epochflow.web import access
from epochflow.web.access import Access
from epochflow.web.params import ApiError
from epochflow.web.responses import Health, IngestRefused, IngestResult, InvalidRow
from epochflow.web.routes import ApiView, Operation, Param, access_of, route

MAX_BODY_BYTES = 16 * 1024 * 1024  # the default of EPOCHFLOW_API_MAX_BODY_BYTES
MAX_LISTED = 100  # invalid events named in a refusal: enough to fix a file, never a huge answer


@route("/health/", tag="meta", get=Operation("The worker is up", Access.OPEN, Health))
class HealthView(ApiView):
    async def get(self, request):
        return self.json(Health(role=ROLE, app=app.conf.id, status="ok").dump())


@route(
    "/metrics/",
    tag="meta",
    get=Operation("Prometheus metrics of this worker", Access.OPEN, None, content_type="text/plain"),
)
class MetricsView(ApiView):
    async def get(self, request):
        return self.bytes(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def events_from_body(doc) -> list:
    """A scenario file, a list of events or a single event; a body of another shape is
    refused (422) rather than guessed at."""
    if isinstance(doc, dict) and "cases" in doc:
        cases = doc["cases"]
        if not isinstance(cases, list) or not all(isinstance(case, dict) for case in cases):
            raise ApiError(422, "cases must be a list of objects")
        return [event for case in cases for event in _events_of(case)]
    if isinstance(doc, dict) and "events" in doc:
        return _events_of(doc)
    if isinstance(doc, list):
        return doc
    return [doc]


def _events_of(doc: dict) -> list:
    events = doc.get("events", [])
    if not isinstance(events, list):
        raise ApiError(422, "events must be a list")
    return events


def validate_all(raw_events: list) -> tuple[list, list[dict]]:
    parsed, errors = [], []
    for index, raw in enumerate(raw_events):
        if not isinstance(raw, dict):
            errors.append({"index": index, "reason": f"an event must be a JSON object, not {type(raw).__name__}"})
            continue
        try:
            parsed.append(parse_event(raw))
        except InvalidEvent as error:
            errors.append({"index": index, "reason": error.reason})
    return parsed, errors


def validate_rows(table: Table) -> tuple[list, list[InvalidRow]]:
    """The events of a CSV body, and each problem by row and field (a row's problems that
    are not an event model's, such as an unknown type, before them)."""
    parsed, errors = [], []
    for problem in table.problems:
        if problem.row is not None:
            field, reason = _header_field(problem.reason)
            errors.append(InvalidRow(row=problem.row, field=field, reason=reason))
    for row, raw in table.events:
        try:
            parsed.append(parse_event(raw))
        except InvalidEvent as error:
            errors += [InvalidRow(row=row, field=f, reason=r) for f, r in map(split_problem, error.problems)]
    errors.sort(key=lambda e: e.row)
    return parsed, errors


def _header_field(reason: str) -> tuple[str | None, str]:
    """(`fee`, `unknown column`) from `column 'fee': unknown column`; (`type`, ...) from
    `type: ...`; (None, reason) otherwise."""
    where, sep, rest = reason.partition(": ")
    if sep and where.startswith("column '") and where.endswith("'"):
        return where[len("column '"):-1], rest
    if sep and where == "type":
        return "type", rest
    return None, reason


CHECKPOINT_NOT_SENT = "a checkpoint only means something to the scenario runner; it is not sent"


def not_published(parsed: list) -> list[dict]:
    """The valid events that publishing leaves out, by their index in the request."""
    return [
        {"index": index, "type": event.type, "reason": CHECKPOINT_NOT_SENT}
        for index, event in enumerate(parsed)
        if isinstance(event, CheckpointEvent)
    ]


async def send_events(events: list) -> int:
    """Publish validated events with the worker's producer; once they are on the broker,
    how many were sent."""

    async def send(topic: str, partition: int, key: bytes, value: bytes):
        await app.producer.send(topic, key, value, partition=partition, timestamp=None, headers=None)

    count = await publish(events, settings, send)
    await app.producer.flush()
    return count


async def read_body(request, limit: int) -> bytes:
    """The body, refused (413) past `limit` bytes: by its Content-Length before reading when
    it has one, while reading when it is chunked."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"body larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"body larger than {limit} bytes")
    return bytes(body)


_CSV_TYPE = Param(
    "type",
    "With a text/csv body: the event type of rows without a `type` cell (the body then needs no `type` column).",
    {"type": "string", "enum": list(EVENT_FIELDS)},
)


@route(
    "/ingest/",
    tag="ingest",
    post=Operation(
        "Publish events (JSON: a scenario file, a list of events or one event; or CSV, one event a row)",
        Access.WRITE,
        IngestResult,
        description=(
            "All events are validated first; if any is invalid the answer is 422 and nothing is published: "
            "a JSON body's invalid events by index with the reason, a CSV body's problems by row (the header "
            "is row 1), field and reason. A CSV body (Content-Type: text/csv) has a header row naming the "
            "events' fields, one event a row, an empty cell for a field left out, and each row's type in a "
            "`type` column or, for a file of one type, in `?type=`. Checkpoints are valid but not sent: the "
            "answer lists them under `not_published`. See the README's validation rules."
        ),
        query=(_CSV_TYPE,),
        errors={
            400: "`type` given with a body that is not CSV",
            422: "An event (or the body: not JSON, nested too deep, an empty or headerless CSV) is invalid; "
                 "nothing was published",
        },
        request_body={
            "required": True,
            "description": "The events of `epochflow ingest`: {\"cases\": [...]}, {\"events\": [...]}, a list, "
                           "or one; or CSV",
            "content": {
                "application/json": {"schema": {"oneOf": [{"type": "object"}, {"type": "array"}]}},
                MEDIA_TYPE: {
                    "schema": {"type": "string"},
                    "example": "type,security_id,price_date,price,currency\nmarket_price,ACME,2025-03-03,181.90,USD\n",
                },
            },
        },
    ),
)
class Ingest(ApiView):
    async def post(self, request):
        body = await read_body(request, settings.api_max_body_bytes)
        is_csv = request.content_type == MEDIA_TYPE
        if is_csv:
            event_type = request.query.get("type")
            if event_type is not None and event_type not in EVENT_FIELDS:
                raise ApiError(400, f"type: {unknown_type(event_type)}")
            table = read_csv(body.decode("utf-8", "surrogateescape"), event_type)
            document = [p.reason for p in table.problems if p.row is None]
            if document:
                return self.json({"error": f"body refused: {'; '.join(document)}"}, status=422)
            parsed, errors = validate_rows(table)
        else:
            if "type" in request.query:
                raise ApiError(400, "type applies to a text/csv body only (a JSON event carries its own type)")
            try:
                doc = load_json(body)
            except DocumentError as error:
                return self.json({"error": f"body refused: {error}"}, status=422)
            parsed, errors = validate_all(events_from_body(doc))
        if errors:
            listed = "" if len(errors) <= MAX_LISTED else f" (the first {MAX_LISTED} of {len(errors)} listed)"
            refused = IngestRefused.model_validate(
                {"error": f"invalid {'rows' if is_csv else 'events'}{listed}; nothing was published",
                 "invalid": errors[:MAX_LISTED]}
            )
            return self.json(refused.dump(), status=422)
        sendable = [event for event in parsed if not isinstance(event, CheckpointEvent)]
        count = await send_events(sendable) if sendable else 0
        left_out = not_published(parsed)
        return self.json(IngestResult.model_validate({"published": count, "not_published": left_out}).dump())


# The read API: served by every role that loads these views (the api role first of all).
from epochflow.web import api as _api  # noqa: E402,F401
from epochflow.web import changes as _changes  # noqa: E402,F401
from epochflow.web import docs as _docs  # noqa: E402,F401
from epochflow.web import series as _series  # noqa: E402,F401

# Faust builds the aiohttp application when `app.web` is first touched (the pages above);
# the guard must be in place before the web server starts and freezes it.
access.install(app.web.web_app, settings, access_of)
