"""Random hostile requests at every read route, against a real PostgreSQL holding a small
book (no broker: the read API only needs the database): no answer is 500 or 503, so every
value that passes the parameter checks is one the columns it reaches can hold (an epoch of
2147483648 used to reach the 32-bit column and fail there). Ingest bodies are thrown at
`POST /ingest/` too, with publishing recorded rather than sent."""

from __future__ import annotations  # noqa: I001  (served loads the app before the web modules register routes)

from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.sinks.writer import ResultWriter
from tests.unit.web.served import client, settings
from epochflow.web import api, views
from tests.fixtures.hostile_requests import Request, answer, ingest_requests, read_requests
from tests.fixtures.result_rows import hist, state, tx
from tests.integration.sinks.valuation_rows import job, snap

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

EXAMPLES = hypothesis_settings(max_examples=200, deadline=None,
                               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
async def served_book(clean_db: AsyncEngine, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    await ResultWriter(clean_db).write([tx("T1"), hist("T1", seq=1), snap(), job(), state(watermark_date=None)])
    monkeypatch.setattr(api, "settings", settings(database_url=postgres_url))
    monkeypatch.setattr(api, "_engine", None)

    async def record(events: list) -> int:
        return len(events)

    monkeypatch.setattr(views, "send_events", record)
    try:
        yield
    finally:
        if api._engine is not None:
            await api._engine.dispose()


async def test_the_book_is_served(served_book: None) -> None:
    async with client(settings()) as http:
        status, body = await answer(http, Request("GET", "/valuation-jobs/?epoch=0&portfolio_id=P1"))
        assert status == 200 and body["total"] == 1
        status, body = await answer(http, Request("GET", "/valuation-jobs/?epoch=2147483648"))
        assert status == 400 and "epoch" in body["error"]


def check(request: Request, status: int, body, allowed: set[int]) -> None:
    assert status in allowed, (request, status, body)
    if status >= 400:
        assert isinstance(body, dict) and body.get("error"), (request, status, body)


@EXAMPLES
@given(request=read_requests())
async def test_hostile_reads_never_answer_500_with_a_database(served_book: None, request: Request) -> None:
    async with client(settings()) as http:
        status, body = await answer(http, request)
    # the dashboard's figures answer their declared 503 here: this app has a database for the
    # read routes, but its dashboard sampler is not configured with one
    declared = {503} if request.url.split("?")[0] == "/dashboard/data.json" else set()
    check(request, status, body, {200, 400, 404} | declared)


@EXAMPLES
@given(request=ingest_requests())
async def test_hostile_ingest_bodies_never_answer_500(served_book: None, request: Request) -> None:
    async with client(settings(api_max_body_bytes=64 * 1024)) as http:
        status, body = await answer(http, request)
    check(request, status, body, {200, 413, 422})
