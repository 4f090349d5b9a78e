"""The read API over HTTP on the real embedded stack: a small book (two portfolios, two
securities, daily prices, a back-dated trade that bumps an epoch, a price correction
fanned out) is published and settled, then every route is called on the api worker's web
port and its body checked against what was published and against PostgreSQL.

The module's stack runs with EPOCHFLOW_API_TOKEN set (writes need it, reads stay open) and
a small body limit; a second api worker on the same broker and database runs with
EPOCHFLOW_API_READS_NEED_TOKEN=true.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import text

from epochflow.client import Pipeline
from epochflow.devstack.stack import EmbeddedStack
from epochflow.sinks.reads.api import fetch_position_history, fetch_snapshots, fetch_valuation_jobs
from epochflow.topology import ROLE_NAMES
from tests.fixtures.stack import log_tail, running_stack, transaction
from tests.fixtures.valuation import business_dates, days, instrument, portfolio, price

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

D = Decimal
DAY = timedelta(days=1)
SETTLE_S = 120.0
TOKEN = "api-test-token-" + uuid.uuid4().hex
MAX_BODY = 64 * 1024
W = date(2026, 3, 2)  # first day of the book
LAST = W + 5 * DAY  # the business date
P1, P2, S1, S2 = "API_P1", "API_P2", "API_S1", "API_S2"
S1_PRICES = {d: D(100 + n) for n, d in enumerate(days(W, LAST))}  # 100 .. 105
S2_PRICES = {d: D(50 + n) for n, d in enumerate(days(W, LAST))}  # 50 .. 55
S2_CORRECTED = D("53.5")  # S2 on W+3, was 53
WEIGHT = D("1E-10")


# -- the stack, the book, HTTP --------------------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    env = {"EPOCHFLOW_API_TOKEN": TOKEN, "EPOCHFLOW_API_MAX_BODY_BYTES": str(MAX_BODY)}
    with running_stack(ROLE_NAMES, worker_env=env) as running:
        yield running



async def _publish_book(stack: EmbeddedStack) -> None:
    pipeline = await Pipeline.connect(stack.settings)
    try:
        events: list = [instrument(S1), instrument(S2), portfolio(P1, W - 30 * DAY), portfolio(P2, W - 30 * DAY)]
        events += [price(S1, d, v) for d, v in S1_PRICES.items()] + [price(S2, d, v) for d, v in S2_PRICES.items()]
        events += [
            transaction("API_T1", P1, S1, "BUY", W, 10, 100),
            transaction("API_T2", P1, S2, "BUY", W + DAY, 5, 50),
            transaction("API_T3", P2, S1, "BUY", W, 20, 100),
            transaction("API_T4", P2, S1, "SELL", W + 3 * DAY, 5, 103),
        ]
        events += business_dates(W, LAST)
        await pipeline.publish(events)
        await pipeline.settle(SETTLE_S)
        # booked late: dated before the watermark, so P1|S1 moves to epoch 1
        await pipeline.publish([transaction("API_T5", P1, S1, "BUY", W + 2 * DAY, 2, 101)])
        await pipeline.settle(SETTLE_S)
        # a corrected price of a past day: the fan-out resets P1|S2's watermark
        await pipeline.publish([price(S2, W + 3 * DAY, S2_CORRECTED)])
        await pipeline.settle(SETTLE_S)
    finally:
        await pipeline.close()


@pytest.fixture(scope="module")
def port(stack: EmbeddedStack) -> int:
    """The api worker's web port, once the book is in PostgreSQL."""
    asyncio.run(_publish_book(stack))
    return next(w.web_port for w in stack.workers if w.role == "api")


def call(port: int, path: str, *, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, _decoded(response.read(), response.headers.get_content_type())
    except urllib.error.HTTPError as error:
        return error.code, _decoded(error.read(), error.headers.get_content_type())


def _decoded(raw: bytes, content_type: str) -> Any:
    return json.loads(raw) if content_type == "application/json" else raw.decode()


def get(port: int, path: str, **options: Any) -> Any:
    status, body = call(port, path, **options)
    assert status == 200, (path, status, body)
    return body


def dec(value: str | None) -> Decimal | None:
    return None if value is None else D(value)


def ids(value: str) -> str:
    return quote(value, safe="")


# -- positions ------------------------------------------------------------------------------


def test_positions_of_the_latest_day_with_weights(port: int) -> None:
    body = get(port, f"/portfolios/{P1}/positions/")
    assert body["portfolio_id"] == P1 and body["as_of"] == str(LAST)
    rows = {p["security_id"]: p for p in body["positions"]}
    assert list(rows) == [S1, S2]
    s1, s2 = rows[S1], rows[S2]
    assert (s1["epoch"], s1["status"], s1["reprocessing_status"], s1["watermark_date"]) == (1, "CURRENT", "CURRENT", str(LAST))
    assert (s2["epoch"], s2["reprocessing_status"]) == (0, "CURRENT")
    assert (dec(s1["quantity"]), dec(s1["cost_basis"]), dec(s1["cost_basis_local"])) == (12, 1202, 1202)
    assert (dec(s1["market_price"]), dec(s1["market_value"]), dec(s1["unrealized_gain_loss"])) == (105, 1260, 58)
    assert (s1["valuation_date"], s1["valuation_status"], s1["held_since_date"]) == (str(LAST), "VALUED_CURRENT", str(W))
    assert (dec(s2["quantity"]), dec(s2["market_value"]), dec(s2["unrealized_gain_loss_local"])) == (5, 275, 25)
    total = D(1260 + 275)
    assert dec(body["total_market_value"]) == total
    assert dec(s1["weight"]) == (D(1260) / total).quantize(WEIGHT)
    assert dec(s2["weight"]) == (D(275) / total).quantize(WEIGHT)
    assert dec(s1["weight"]) + dec(s2["weight"]) == 1
    # decimal strings, never floats
    assert all(isinstance(s1[k], str) for k in ("quantity", "market_value", "weight"))


def test_positions_as_of_a_past_day_use_that_days_holding_and_value(port: int) -> None:
    body = get(port, f"/portfolios/{P1}/positions/?as_of={W + DAY}")
    rows = {p["security_id"]: p for p in body["positions"]}
    assert body["as_of"] == str(W + DAY)
    assert (dec(rows[S1]["quantity"]), dec(rows[S1]["cost_basis"]), dec(rows[S1]["market_value"])) == (10, 1000, 1010)
    assert (dec(rows[S2]["quantity"]), dec(rows[S2]["market_value"])) == (5, 255)
    assert dec(rows[S1]["weight"]) == (D(1010) / D(1265)).quantize(WEIGHT)
    # the corrected price is what the API shows for W+3
    rows = {p["security_id"]: p for p in get(port, f"/portfolios/{P1}/positions/?as_of={W + 3 * DAY}")["positions"]}
    assert dec(rows[S2]["market_value"]) == 5 * S2_CORRECTED
    # before the first trade: the portfolio is known but held nothing
    assert get(port, f"/portfolios/{P1}/positions/?as_of={W - DAY}")["positions"] == []


def test_a_single_position_portfolio_weighs_one_and_keeps_its_sells(port: int) -> None:
    [row] = get(port, f"/portfolios/{P2}/positions/")["positions"]
    assert (dec(row["quantity"]), dec(row["cost_basis"]), dec(row["market_value"]), dec(row["weight"])) == (15, 1500, 1575, 1)


def test_unknown_portfolio_is_404(port: int) -> None:
    status, body = call(port, "/portfolios/NOPE/positions/")
    assert status == 404 and "NOPE" in body["error"]


# -- a key: history, snapshots, lineage -------------------------------------------------------


async def test_history_is_the_current_epoch_in_a_date_range(port: int, pipeline: Pipeline) -> None:
    body = get(port, f"/positions/{P1}/{S1}/history/")
    assert (body["epoch"], body["reprocessing_status"], body["from"], body["to"]) == (1, "CURRENT", None, None)
    assert [(h["transaction_id"], h["position_date"], dec(h["quantity"]), dec(h["cost_basis"])) for h in body["history"]] == [
        ("API_T1", str(W), 10, 1000), ("API_T5", str(W + 2 * DAY), 12, 1202)]
    stored = await fetch_position_history(pipeline.engine, P1, S1)
    assert [h["seq"] for h in body["history"]] == [h.seq for h in stored]
    ranged = get(port, f"/positions/{P1}/{S1}/history/?from={W + DAY}&to={LAST}")
    assert [h["transaction_id"] for h in ranged["history"]] == ["API_T5"]
    assert (ranged["from"], ranged["to"]) == (str(W + DAY), str(LAST))
    assert get(port, f"/positions/{P1}/{S1}/history/?to={W - DAY}")["history"] == []


async def test_snapshots_are_the_current_epoch_in_a_date_range(port: int, pipeline: Pipeline) -> None:
    body = get(port, f"/positions/{P1}/{S1}/snapshots/")
    assert body["epoch"] == 1
    assert [s["date"] for s in body["snapshots"]] == [str(d) for d in days(W, LAST)]
    assert [(dec(s["quantity"]), dec(s["market_value"])) for s in body["snapshots"]] == [
        (10, 1000), (10, 1010), (12, 1224), (12, 1236), (12, 1248), (12, 1260)]
    stored = await fetch_snapshots(pipeline.engine, P1, S1)
    assert [(str(s.date), s.market_value, s.valuation_status) for s in stored] == [
        (s["date"], dec(s["market_value"]), s["valuation_status"]) for s in body["snapshots"]]
    ranged = get(port, f"/positions/{P1}/{S2}/snapshots/?from={W + 2 * DAY}&to={W + 3 * DAY}")
    assert [(s["date"], dec(s["market_value"]), dec(s["market_price"])) for s in ranged["snapshots"]] == [
        (str(W + 2 * DAY), 260, 52), (str(W + 3 * DAY), 5 * S2_CORRECTED, S2_CORRECTED)]


def test_lineage_of_a_key_rebuilt_in_a_new_epoch(port: int) -> None:
    body = get(port, f"/positions/{P1}/{S1}/lineage/")
    assert (body["epoch"], body["status"], body["reprocessing_status"], body["watermark_date"]) == (
        1, "CURRENT", "CURRENT", str(LAST))
    assert body["epochs_in_history"] == [0, 1]
    assert isinstance(body["generation"], int)
    assert (body["latest_history_date"], body["history_rows"]) == (str(W + 2 * DAY), 2)
    assert (body["first_snapshot_date"], body["latest_snapshot_date"], body["snapshot_count"]) == (str(W), str(LAST), 6)
    # the new epoch values from the day after its watermark reset (the back-dated trade's day)
    assert (body["earliest_job_date"], body["latest_job_date"]) == (str(W + 2 * DAY), str(LAST))
    assert body["jobs_by_status"] == {"PENDING": 0, "PROCESSING": 0, "COMPLETE": 4, "SKIPPED_NO_POSITION": 0, "FAILED": 0}
    assert (body["jobs_blocked"], body["open_reset_jobs"]) == (0, [])
    corrected = get(port, f"/positions/{P1}/{S2}/lineage/")
    assert corrected["epoch"] == 0 and corrected["generation"] >= 1  # reset once by the price correction


@pytest.mark.parametrize("route", ["history", "snapshots", "lineage"])
def test_unknown_key_is_404(port: int, route: str) -> None:
    for portfolio_id, security_id in ((P1, "NOPE"), ("NOPE", S1), (P2, S2)):
        status, body = call(port, f"/positions/{portfolio_id}/{security_id}/{route}/")
        assert status == 404 and "error" in body, (route, portfolio_id, security_id)


# -- jobs -------------------------------------------------------------------------------------


async def test_valuation_jobs_filter_and_page(port: int, pipeline: Pipeline) -> None:
    body = get(port, f"/valuation-jobs/?portfolio_id={P1}&security_id={S1}&epoch=1")
    assert body["total"] == 4 and (body["limit"], body["offset"]) == (100, 0)
    assert [(j["valuation_date"], j["epoch"], j["status"]) for j in body["jobs"]] == [
        (str(d), 1, "COMPLETE") for d in days(W + 2 * DAY, LAST)]

    everything = await fetch_valuation_jobs(pipeline.engine, limit=1000)
    listed = get(port, "/valuation-jobs/?limit=1000")
    assert listed["total"] == len(everything) == len(listed["jobs"])
    assert [(j["portfolio_id"], j["security_id"], j["valuation_date"], j["epoch"]) for j in listed["jobs"]] == [
        (j.portfolio_id, j.security_id, str(j.valuation_date), j.epoch) for j in everything]

    pages = [get(port, f"/valuation-jobs/?limit=3&offset={offset}")["jobs"] for offset in range(0, len(everything), 3)]
    assert [j for page in pages for j in page] == listed["jobs"]
    assert get(port, f"/valuation-jobs/?offset={len(everything)}")["jobs"] == []

    complete = get(port, f"/valuation-jobs/?portfolio_id={P2}&status=COMPLETE&limit=1000")
    assert complete["total"] == len(complete["jobs"]) > 0
    assert {(j["portfolio_id"], j["status"]) for j in complete["jobs"]} == {(P2, "COMPLETE")}
    assert get(port, "/valuation-jobs/?status=FAILED")["total"] == 0
    assert get(port, "/valuation-jobs/?portfolio_id=NOPE") == {"total": 0, "limit": 100, "offset": 0, "jobs": []}


def test_reprocessing_jobs_and_triggers_show_the_price_correction(port: int) -> None:
    body = get(port, f"/reprocessing/jobs/?security_id={S2}")
    assert body["jobs"], body
    assert {(j["job_type"], j["subject"], j["status"], j["earliest_impacted_date"]) for j in body["jobs"]} == {
        ("RESET_WATERMARKS", f"price|{S2}", "COMPLETE", str(W + 3 * DAY))}
    assert body["progress"]["complete"] >= 1 and body["progress"]["pending"] == 0
    assert get(port, f"/reprocessing/jobs/?subject=price|{S1}")["jobs"] == []
    assert get(port, "/reprocessing/triggers/")["triggers"] == []
    every = get(port, "/reprocessing/triggers/?all=true")["triggers"]
    assert f"price|{S2}" in {t["subject"] for t in every} and not any(t["pending"] for t in every)


# -- support ----------------------------------------------------------------------------------


def test_support_overview(port: int) -> None:
    body = get(port, f"/portfolios/{P1}/support/")
    assert body["portfolio_id"] == P1
    assert body["business_date"] == str(LAST)
    assert (body["keys_total"], body["keys_by_status"]) == (2, {"CURRENT": 2})
    assert body["keys_reprocessing"] == {"count": 0, "keys": []}
    assert body["keys_behind"] == {"count": 0, "keys": []}
    assert body["keys_waiting_for_data"] == {"count": 0, "keys": []}
    assert body["valuation_jobs"] == {"pending": 0, "blocked": 0, "processing": 0, "failed": 0}
    assert body["troubled_jobs"] == [] and body["open_reset_jobs"] == []
    assert (body["latest_snapshot_date"], body["latest_transaction_date"]) == (str(LAST), str(W + 2 * DAY))
    status, missing = call(port, "/portfolios/NOPE/support/")
    assert status == 404 and "error" in missing


# -- transactions, CSV, BI views, the API page -------------------------------------------------


async def test_transactions_as_costed_with_the_epoch_of_their_last_costing(port: int, pipeline: Pipeline) -> None:
    body = get(port, f"/portfolios/{P1}/transactions/")
    assert (body["reprocessing_status"], body["total"]) == ("CURRENT", 3)
    rows = {t["transaction_id"]: t for t in body["transactions"]}
    assert list(rows) == ["API_T1", "API_T2", "API_T5"]  # by date: W, W+1, W+2 (booked last)
    t1, t5 = rows["API_T1"], rows["API_T5"]
    assert (dec(t1["net_cost"]), dec(t1["net_cost_local"]), dec(t5["net_cost"])) == (1000, 1000, 202)
    assert t5["epoch"] == 1 and t1["epoch"] <= 1 and not (t5["oversold"] or t5["fx_missing"])
    sold = get(port, f"/portfolios/{P2}/transactions/?from={W + DAY}")["transactions"]
    assert [(t["transaction_type"], dec(t["realized_gain_loss"])) for t in sold] == [("SELL", D(5 * 103 - 5 * 100))]
    # the BI view shows the same rows, and every key's current epoch only for snapshots
    async with pipeline.engine.connect() as conn:
        viewed = (await conn.execute(text(
            "SELECT transaction_id, epoch, net_cost FROM bi_transactions WHERE portfolio_id = :p ORDER BY transaction_id"),
            {"p": P1})).all()
        snapshot_epochs = (await conn.execute(text(
            "SELECT DISTINCT epoch FROM bi_daily_snapshots WHERE portfolio_id = :p AND security_id = :s"),
            {"p": P1, "s": S1})).scalars().all()
        position = (await conn.execute(text(
            "SELECT quantity, valuation_date, market_value FROM bi_positions WHERE portfolio_id = :p AND security_id = :s"),
            {"p": P1, "s": S1})).one()
    assert [(r.transaction_id, r.epoch, r.net_cost) for r in viewed] == [
        (t["transaction_id"], t["epoch"], dec(t["net_cost"])) for t in body["transactions"]]
    assert snapshot_epochs == [1]
    assert tuple(position) == (12, LAST, 1260)


def test_reads_answer_csv(port: int) -> None:
    status, text_body = call(port, f"/positions/{P1}/{S1}/snapshots/?format=csv")
    assert status == 200
    lines = text_body.splitlines()
    assert lines[0].startswith("date,quantity,") and len(lines) == 1 + len(days(W, LAST))
    request = urllib.request.Request(f"http://127.0.0.1:{port}/portfolios/{P1}/transactions/",
                                     headers={"Accept": "text/csv"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers.get_content_type() == "text/csv"
        assert len(response.read().decode().splitlines()) == 1 + 3
    status, refused = call(port, f"/portfolios/{P1}/support/?format=csv")
    assert status == 406 and "CSV" in refused["error"]


def test_the_api_page_is_served_with_its_files(port: int) -> None:
    status, page = call(port, "/docs/")
    assert status == 200 and "swagger-ui-bundle.js" in page and "https://" not in page
    status, script = call(port, "/docs/swagger-ui-bundle.js")
    assert status == 200 and "SwaggerUIBundle" in script


# -- the document -----------------------------------------------------------------------------


def test_openapi_document_lists_every_route(port: int) -> None:
    doc = get(port, "/openapi.json")
    assert doc["openapi"] == "3.1.0"
    for path in ("/health/", "/metrics/", "/ingest/", "/openapi.json", "/valuation-jobs/", "/reprocessing/jobs/",
                 "/reprocessing/triggers/", "/portfolios/{portfolio_id}/positions/", "/portfolios/{portfolio_id}/support/",
                 "/positions/{portfolio_id}/{security_id}/history/", "/positions/{portfolio_id}/{security_id}/snapshots/",
                 "/positions/{portfolio_id}/{security_id}/lineage/"):
        assert path in doc["paths"], path
    assert doc["paths"]["/ingest/"]["post"]["security"] == [{"bearerAuth": []}]  # this stack has a token
    assert doc["paths"]["/valuation-jobs/"]["get"]["security"] == []
    # Faust's own views are served too: listed, as admin
    unregistered = {path for path, ops in doc["paths"].items() if any(o["x-epochflow-access"] == "write" and
                                                                     "unregistered" in o["tags"] for o in ops.values())}
    assert unregistered, "expected Faust's built-in views to be listed"


# -- bad input --------------------------------------------------------------------------------

BAD_REQUESTS = [
    f"/portfolios/{P1}/positions/?as_of=2026-02-30",
    f"/portfolios/{P1}/positions/?as_of=03/02/2026",
    f"/positions/{P1}/{S1}/history/?from={LAST}&to={W}",
    f"/positions/{P1}/{S1}/snapshots/?from=yesterday",
    f"/positions/{P1}/{S1}/snapshots/?to=2026-3-2",
    "/valuation-jobs/?status=DONE",
    "/valuation-jobs/?offset=-1",
    "/valuation-jobs/?limit=0",
    "/valuation-jobs/?limit=100000",
    "/valuation-jobs/?epoch=x",
    "/valuation-jobs/?portfolio_id=%00",
    "/reprocessing/jobs/?limit=1001",
    f"/portfolios/{P1}/positions/?unknown=1",
]


@pytest.mark.parametrize("path", BAD_REQUESTS)
def test_bad_parameters_are_400_with_a_message(port: int, path: str) -> None:
    status, body = call(port, path)
    assert status == 400 and isinstance(body["error"], str) and body["error"], (path, body)


HOSTILE = ["'", '"', "' OR '1'='1", "'; DROP TABLE position_state; --", "\x00", "a\x00b", "../../etc/passwd", "..",
           "%00", "%", "\\", "<script>", "ü€", "x" * 257, "x" * 10_000, "\n", "P1|S1"]


@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda h: repr(h)[:20])
def test_hostile_ids_are_400_or_404_never_500(port: int, hostile: str, stack: EmbeddedStack) -> None:
    quoted = ids(hostile)
    for path in (f"/portfolios/{quoted}/positions/", f"/portfolios/{quoted}/support/",
                 f"/positions/{quoted}/{S1}/history/", f"/positions/{P1}/{quoted}/snapshots/",
                 f"/positions/{quoted}/{quoted}/lineage/", f"/valuation-jobs/?portfolio_id={quoted}",
                 f"/valuation-jobs/?security_id={quoted}"):
        status, body = call(port, path)
        expected = (200,) if path.startswith("/valuation-jobs/") else (400, 404)
        assert status in expected + (400,), (path, status, body, log_tail(stack, "api-0"))
        if len(hostile) <= 256:  # longer URLs may be refused by the HTTP parser itself (400, text)
            assert isinstance(body, dict), (path, body)
    # the database is still there and unchanged
    assert get(port, f"/portfolios/{P1}/positions/")["positions"]


# -- access ------------------------------------------------------------------------------------


def _portfolio_event(portfolio_id: str) -> bytes:
    return json.dumps([{"type": "portfolio", "portfolio_id": portfolio_id, "base_currency": "USD",
                        "open_date": str(W)}]).encode()


def test_ingest_needs_the_token(port: int) -> None:
    status, body = call(port, "/ingest/", method="POST", body=_portfolio_event("API_P3"))
    assert status == 401 and "Bearer" in body["error"]
    status, body = call(port, "/ingest/", method="POST", body=_portfolio_event("API_P3"),
                        headers={"Authorization": "Bearer wrong"})
    assert (status, body) == (403, {"error": "wrong token"})
    status, body = call(port, "/ingest/", method="POST", body=_portfolio_event("API_P3"),
                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert (status, body) == (200, {"published": 1, "not_published": []})


def test_reads_health_and_metrics_are_open_without_the_token(port: int) -> None:
    assert get(port, "/health/")["role"] == "api"
    assert "epochflow_" in get(port, "/metrics/")
    assert get(port, f"/portfolios/{P1}/positions/")["positions"]


def test_an_oversized_body_is_413(port: int) -> None:
    big = b"[" + b" " * (MAX_BODY + 1) + b"]"
    status, body = call(port, "/ingest/", method="POST", body=big, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 413 and str(MAX_BODY) in body["error"]


@contextmanager
def api_worker(stack: EmbeddedStack, env: dict[str, str]) -> Iterator[EmbeddedStack]:
    """One more api worker on the module stack's broker and database (its own topic prefix,
    so it joins no group of the first), with `env`."""
    base = Path(tempfile.mkdtemp(prefix="epochflow-api-"))
    extra = EmbeddedStack(base, roles=("api",), partitions=stack.settings.partitions,
                          topic_prefix=f"{stack.settings.topic_prefix}-locked", worker_env=env)
    extra.settings = dataclasses.replace(extra.settings, kafka_url=stack.settings.kafka_url,
                                         database_url=stack.settings.database_url)
    try:
        with extra:
            extra.wait_ready(90)
            yield extra
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_reads_need_the_token_when_configured(port: int, stack: EmbeddedStack) -> None:
    env = {"EPOCHFLOW_API_TOKEN": TOKEN, "EPOCHFLOW_API_READS_NEED_TOKEN": "true"}
    with api_worker(stack, env) as locked:
        locked_port = locked.workers[0].web_port
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        for path in (f"/portfolios/{P1}/positions/", f"/positions/{P1}/{S1}/lineage/", "/valuation-jobs/",
                     "/openapi.json", "/reprocessing/jobs/"):
            assert call(locked_port, path)[0] == 401, path
            assert call(locked_port, path, headers={"Authorization": "Bearer nope"})[0] == 403, path
            assert call(locked_port, path, headers=bearer)[0] == 200, path
        assert get(locked_port, "/health/")["status"] == "ok"
        assert call(locked_port, "/metrics/")[0] == 200
        # the same numbers as the open worker
        assert get(locked_port, f"/portfolios/{P1}/positions/", headers=bearer) == get(port, f"/portfolios/{P1}/positions/")
