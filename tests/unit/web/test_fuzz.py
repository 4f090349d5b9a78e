"""Random hostile requests at every route of the web app, served in-process without a
broker or a database: none may answer 500. Reads answer 400 (a parameter named), 404, or
503 (no database here); ingest answers 200, 413 or 422 (publishing is recorded, not sent), and 400 for a CSV body's
unknown `?type=`.
`tests/integration/test_api_fuzz.py` repeats the reads against a real PostgreSQL."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from epochflow.web import api, views  # noqa: I001
from tests.fixtures.hostile_requests import Request, answer, csv_ingest_requests, ingest_requests, read_requests
from tests.unit.web.served import client, settings

EXAMPLES = hypothesis_settings(max_examples=200, deadline=None,
                               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def no_broker_no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "settings", settings(database_url=""))

    async def record(events: list) -> int:
        return len(events)

    monkeypatch.setattr(views, "send_events", record)


def check(request: Request, status: int, body, allowed: set[int]) -> None:
    assert status in allowed, (request, status, body)
    if status >= 400:
        assert isinstance(body, dict) and body.get("error"), (request, status, body)


@EXAMPLES
@given(request=read_requests())
async def test_hostile_reads_never_answer_500(request: Request) -> None:
    async with client(settings()) as http:
        status, body = await answer(http, request)
    check(request, status, body, {200, 400, 404, 503})


@EXAMPLES
@given(request=ingest_requests())
async def test_hostile_ingest_bodies_never_answer_500(request: Request) -> None:
    async with client(settings(api_max_body_bytes=64 * 1024)) as http:
        status, body = await answer(http, request)
    check(request, status, body, {200, 413, 422})


@EXAMPLES
@given(request=csv_ingest_requests())
async def test_hostile_csv_bodies_never_answer_500(request: Request) -> None:
    async with client(settings(api_max_body_bytes=64 * 1024)) as http:
        status, body = await answer(http, request)
    check(request, status, body, {200, 400, 413, 422})
