"""The operations dashboard in a real headless browser.

On the real embedded stack (every role, the api worker serving `/dashboard/`): six keys
valued over five days, a back-dated price that the fan-out turns into RESET_WATERMARKS
jobs, a malformed transaction that lands on the dead-letter topic. Once the pipeline is
quiescent, `data.json` must agree with PostgreSQL, and the page rendered by Debian's
Chromium must show every panel with those figures filled in; its screenshot must be a
real picture of it. Apart from the stack, the page must say plainly when its data
endpoint fails.

Chromium comes from `tests/fixtures/browser.py`, which installs it when it is missing and
it can (root with apt); the tests skip, saying why, only when it cannot be had.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from epochflow.client import Pipeline
from epochflow.devstack.stack import EmbeddedStack
from epochflow.sinks.models import portfolio_valuation_jobs, reprocessing_jobs
from epochflow.streams.partitioning import partition_for
from epochflow.topology import ROLE_NAMES
from tests.fixtures.browser import BrowserUnavailable, dump_dom, find_chromium, read_png, screenshot
from tests.fixtures.stack import key_of, log_tail, running_stack, transaction
from tests.fixtures.valuation import business_dates, days, instrument, portfolio, price

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

DAY = timedelta(days=1)
FIRST = date(2026, 3, 2)
LAST = FIRST + 4 * DAY
PORTFOLIOS = ("DASH-P0", "DASH-P1", "DASH-P2")
SECURITIES = ("DASH_A", "DASH_B")
KEYS = len(PORTFOLIOS) * len(SECURITIES)
SETTLE_S = 180.0
PANELS = ("keys-by-status", "valuation-queue", "reprocessing-queue", "watermark-lag", "fanout-progress",
          "throughput", "dead-letters")
WINDOW = (1400, 1000)
MALFORMED_MARKER = "dashboard-malformed-9c1e"


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        return find_chromium(install=True)
    except BrowserUnavailable as error:
        pytest.skip(f"no headless Chromium on this machine: {error}")


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    with running_stack(ROLE_NAMES) as running:
        yield running



# -- reading the rendered DOM ---------------------------------------------------------------------

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    ancestors: tuple[str, ...]  # ids of the enclosing elements that have one, outermost first
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join("".join(self.parts).split())


class Dom(HTMLParser):
    """Every element of a dumped DOM with its attributes, its full text and the ids around it."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ids = tuple(e.attrs["id"] for e in self._open if "id" in e.attrs)
        element = Element(tag, {k: v or "" for k, v in attrs}, ids)
        self.elements.append(element)
        if tag not in _VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ids = tuple(e.attrs["id"] for e in self._open if "id" in e.attrs)
        self.elements.append(Element(tag, {k: v or "" for k, v in attrs}, ids))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.parts.append(data)

    def find(self, tag: str | None = None, within: str | None = None, **attrs: str) -> list[Element]:
        wanted = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [
            e for e in self.elements
            if (tag is None or e.tag == tag)
            and (within is None or within in e.ancestors or e.attrs.get("id") == within)
            and all(e.attrs.get(k) == v if v != "*" else k in e.attrs for k, v in wanted.items())
        ]

    def by_id(self, element_id: str) -> Element:
        found = self.find(id=element_id)
        assert len(found) == 1, f"{len(found)} elements with id {element_id!r}"
        return found[0]

    def metric(self, name: str) -> str:
        found = self.find(data_metric=name)
        assert len(found) == 1, f"{len(found)} elements with data-metric {name!r}"
        return found[0].attrs["data-value"]


# -- helpers ---------------------------------------------------------------------------------------


def api_port(stack: EmbeddedStack) -> int:
    return next(w.web_port for w in stack.workers if w.role == "api")


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


async def wait_for_data(url: str, ready, timeout_s: float = 90.0) -> dict[str, Any]:
    """data.json once `ready(data)` holds (the sampler takes one sample every 2 s)."""
    deadline = time.monotonic() + timeout_s
    data: dict[str, Any] = {}
    while time.monotonic() < deadline:
        data = await asyncio.to_thread(get_json, url)
        if ready(data):
            return data
        await asyncio.sleep(1.0)
    raise AssertionError(f"data.json never got ready: {json.dumps(data, indent=1)[:4000]}")


async def publish_dataset(pipeline: Pipeline) -> None:
    events: list = [instrument(s) for s in SECURITIES]
    events += [portfolio(p, FIRST - 30 * DAY) for p in PORTFOLIOS]
    events += [price(s, d, 10 + n + i, "USD") for i, s in enumerate(SECURITIES) for n, d in enumerate(days(FIRST, LAST))]
    events += [transaction(f"{p}-{s}-BUY", p, s, "BUY", FIRST, 5 + j, 10 + i)
               for i, s in enumerate(SECURITIES) for j, p in enumerate(PORTFOLIOS)]
    events += business_dates(FIRST, LAST)
    await pipeline.publish(events)
    await pipeline.settle(SETTLE_S)
    # a back-dated correction of DASH_A's price: the fan-out resets its three holders
    await pipeline.publish([price("DASH_A", FIRST + DAY, "11.50", "USD")])
    await pipeline.settle(SETTLE_S)
    # and one malformed transaction for the dead-letter topic
    key = key_of(PORTFOLIOS[0], SECURITIES[0])
    bad = b'{"type": "transaction", "transaction_id": "' + MALFORMED_MARKER.encode() + b'", oops'
    await pipeline.send_raw("transactions", partition_for(key, pipeline.settings.partitions), key.encode(), bad)
    await pipeline.settle(SETTLE_S)


async def job_counts(pipeline: Pipeline) -> tuple[dict[str, int], dict[str, int]]:
    """Valuation jobs and RESET_WATERMARKS jobs by status, counted in PostgreSQL."""
    async with pipeline.engine.connect() as conn:
        j, r = portfolio_valuation_jobs.c, reprocessing_jobs.c
        valuation = {row[0]: row[1] for row in await conn.execute(select(j.status, func.count()).group_by(j.status))}
        resets = {row[0]: row[1] for row in await conn.execute(select(r.status, func.count()).group_by(r.status))}
    return valuation, resets


# -- the tests -------------------------------------------------------------------------------------


async def test_the_dashboard_shows_the_running_stack(stack: EmbeddedStack, pipeline: Pipeline, chromium: str,
                                                    tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{api_port(stack)}/dashboard/"
    await publish_dataset(pipeline)
    valuation_jobs, reset_jobs = await job_counts(pipeline)
    assert reset_jobs.get("COMPLETE") and set(reset_jobs) == {"COMPLETE"}, reset_jobs

    def settled(d: dict[str, Any]) -> bool:
        return bool(
            d.get("keys") and d["keys"]["by_status"]["CURRENT"] == KEYS
            and d["valuation_queue"]["by_status"] == {s: valuation_jobs.get(s, 0) for s in d["valuation_queue"]["by_status"]}
            and d["reprocessing_queue"]["jobs_by_status"]["COMPLETE"] == reset_jobs["COMPLETE"]
            and d.get("dead_letters") and d["dead_letters"]["count"] >= 1
            and d.get("throughput") and d["throughput"]["rows_written"] > 0
            and d["throughput"]["rows_per_s"] is not None
            and len(d["history"]["t"]) >= 3
        )

    try:
        data = await wait_for_data(base + "data.json", settled)
    except AssertionError:
        raise AssertionError(f"api worker log:\n{log_tail(stack, 'api-0')}") from None

    # data.json agrees with PostgreSQL and with what was published
    assert data["errors"] == {} and data["sampler"]["stale"] is False
    assert data["business_date"] == LAST.isoformat()
    assert data["keys"] == {"total": KEYS, "by_status": {"CURRENT": KEYS, "REPROCESSING": 0}, "waiting_for_data": 0}
    assert data["watermark_lag"]["max_days"] == 0 and data["watermark_lag"]["keys_behind"] == 0
    assert data["watermark_lag"]["buckets"][0] == {"label": "0", "from_days": 0, "to_days": 0, "keys": KEYS}
    assert data["valuation_queue"]["open"] == 0 and valuation_jobs.get("COMPLETE", 0) > 0
    assert data["reprocessing_queue"]["triggers_pending"] == 0 and data["reprocessing_queue"]["open"] == 0
    recent = data["fanout"]["recent"]
    assert recent and {j["subject"] for j in recent} == {"price|DASH_A"}
    assert sum(j["keys_reset"] for j in recent) == len(PORTFOLIOS) and all(j["fraction"] == 1.0 for j in recent)
    assert data["dead_letters"]["count"] == 1
    assert MALFORMED_MARKER in data["dead_letters"]["recent"][0]["raw"]
    assert data["throughput"]["by_table"]["daily_position_snapshots"]["rows_written"] > 0

    # the page, rendered by Chromium after its scripts fetched data.json
    dom = Dom(await asyncio.to_thread(dump_dom, base, chromium=chromium, budget_ms=6000, window=WINDOW))
    status = dom.by_id("status")
    assert status.attrs["data-state"] == "ok", status.text
    assert dom.by_id("last-refresh").text.startswith("Last refresh: ") and "never" not in dom.by_id("last-refresh").text
    assert dom.by_id("business-date").text == LAST.isoformat()
    for panel in PANELS:
        section = dom.by_id(panel)
        headings = dom.find("h2", within=panel)
        assert section.tag == "section" and headings and headings[0].text, f"{panel} has no heading"
        assert "Loading" not in section.text and "Unavailable" not in section.text, f"{panel}: {section.text}"
    assert dom.metric("keys-total") == str(KEYS)
    assert dom.metric("keys-current") == str(KEYS)
    assert dom.metric("keys-reprocessing") == "0"
    assert dom.metric("jobs-runnable") == "0" and dom.metric("jobs-processing") == "0"
    complete_cell = dom.find("td", within="valuation-queue", data_status="COMPLETE")
    assert complete_cell and complete_cell[0].text == f"{valuation_jobs['COMPLETE']:,}"
    assert dom.metric("reset-jobs-complete") == str(reset_jobs["COMPLETE"])
    assert dom.metric("triggers-pending") == "0"
    assert dom.metric("max-lag-days") == "0"
    assert dom.find(within="watermark-lag", data_bucket="0")[0].text == str(KEYS)
    finished = dom.find("div", within="fanout-progress", data_job="*")
    assert finished and {e.attrs["data-status"] for e in finished} == {"COMPLETE"}
    assert all(e.attrs.get("aria-valuenow") == e.attrs.get("aria-valuemax")
               for e in dom.find(within="fanout-progress", role="progressbar") if e.attrs.get("aria-valuemax") != "0")
    assert int(dom.metric("rows-written")) > 0
    assert dom.metric("dead-letter-count") == "1"
    assert MALFORMED_MARKER in dom.by_id("dead-letters").text
    for panel in ("keys-by-status", "valuation-queue", "reprocessing-queue", "watermark-lag", "throughput", "dead-letters"):
        charts = dom.find("svg", within=panel)
        assert charts, f"{panel} has no chart"
        assert dom.find("path", within=panel, data_series="*") or dom.find("circle", within=panel), f"{panel}: empty chart"

    # the screenshot: a real picture of that page
    shot = await asyncio.to_thread(screenshot, base, tmp_path / "dashboard.png", chromium=chromium,
                                   budget_ms=6000, window=WINDOW)
    assert shot.stat().st_size > 20_000
    png = read_png(shot)
    assert (png.width, png.height) == WINDOW
    colors = png.colors(step=2)
    assert len(colors) > 200, f"only {len(colors)} colours: blank or nearly"
    background = max(colors.values()) / sum(colors.values())
    assert background < 0.8, f"{background:.0%} of the page is one colour"
    assert png.rgb(4, 4) == (0x1E, 0x3A, 0x5F), "no header bar"
    assert (0xDC, 0xFC, 0xE7) in png.colors(box=(0, 40, WINDOW[0], 110)), "no green 'live' status banner"
    assert (0x15, 0x80, 0x3D) in colors, "no CURRENT line or finished job bar"
    assert (0x25, 0x63, 0xEB) in colors, "no lag histogram bar or throughput line"


class _Endpoint(BaseHTTPRequestHandler):
    """The page as the api role serves it; data.json answers once, then fails."""

    page = b""
    answered = 0

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.startswith("/dashboard/data.json"):
            type(self).answered += 1
            if type(self).answered == 1:
                self._send(200, "application/json", json.dumps(_minimal_payload()).encode())
            else:
                self._send(500, "application/json", b'{"error": "database is on fire"}')
        elif self.path == "/dashboard/":
            self._send(200, "text/html; charset=utf-8", self.page)
        else:
            self._send(404, "text/plain", b"not found")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _minimal_payload() -> dict[str, Any]:
    return {
        "generated_at": "2026-03-06T10:00:00+00:00", "refresh_s": 1, "errors": {}, "business_date": "2026-03-06",
        "database_as_of": "2026-03-06T10:00:00+00:00",
        "sampler": {"interval_s": 2, "window_s": 1800, "samples": 1, "last_sample_at": "2026-03-06T10:00:00+00:00",
                    "last_duration_ms": 3, "stale": False},
        "keys": {"total": 4, "by_status": {"CURRENT": 3, "REPROCESSING": 1}, "waiting_for_data": 0},
        "valuation_queue": None, "reprocessing_queue": None, "watermark_lag": None, "fanout": None,
        "throughput": None, "dead_letters": None,
        "history": {"t": [1_800_000_000], "keys_current": [3], "keys_reprocessing": [1]},
    }


def test_the_page_says_when_its_data_endpoint_fails(chromium: str) -> None:
    _Endpoint.page = resources.files("epochflow.web.dashboard").joinpath("dashboard.html").read_bytes()
    _Endpoint.answered = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # refresh_s is 1: within 4 s of virtual time the page has had one answer, then failures
        dom = Dom(dump_dom(f"http://127.0.0.1:{server.server_port}/dashboard/", chromium=chromium, budget_ms=4000))
    finally:
        server.shutdown()
        server.server_close()
    assert _Endpoint.answered >= 2
    status = dom.by_id("status")
    assert status.attrs["data-state"] == "error"
    assert "Data endpoint failed" in status.text and "HTTP 500" in status.text and "database is on fire" in status.text
    assert "Showing data from" in status.text
    assert "stale" in dom.find("body")[0].attrs.get("class", "")
    assert dom.metric("keys-current") == "3"  # the last good figures stay, dimmed
    assert "Unavailable: no data yet" in dom.by_id("throughput").text
