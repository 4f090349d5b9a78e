"""The per-portfolio page in headless Chromium, against a canned time series: both charts
drawn through every day, the days being rebuilt shaded from `rebuilding_from`, the
INCOMPLETE day marked, and a screenshot that shows them (tests/fixtures/browser.py)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.browser import BrowserUnavailable, dump_dom, find_chromium, read_png, screenshot

DAYS = [f"2026-04-{d:02d}" for d in range(6, 16)]
SERIES = {
    "portfolio_id": "P_PAGE", "reprocessing_status": "IN_PROGRESS", "rebuilding_from": DAYS[6],
    "rows": [{"date": day, "eod_market_value": str(10_000 + 150 * n), "cumulative_return": str(0.004 * n),
              "valuation_status": "INCOMPLETE" if n == 8 else "COMPLETE", "daily_return": "0.001"}
             for n, day in enumerate(DAYS)],
}


def page_html() -> str:
    """The page as `GET /portfolios/{id}/page/` serves it (epochflow.web.series)."""
    return resources.files("epochflow.web").joinpath("portfolio_page.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        return find_chromium(install=False)
    except BrowserUnavailable as error:
        pytest.skip(f"no headless Chromium on this machine: {error}")


class _Endpoint(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.startswith("/portfolios/P_PAGE/timeseries/"):
            self._send(200, "application/json", json.dumps(SERIES).encode())
        elif self.path.endswith("/page/"):
            self._send(200, "text/html; charset=utf-8", page_html().encode())
        else:
            self._send(404, "application/json", b'{"error": "no portfolio \'NOPE\'"}')

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def base() -> Any:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_page_draws_the_series_and_marks_the_days_being_rebuilt(chromium: str, base: str, tmp_path: Path) -> None:
    url = f"{base}/portfolios/P_PAGE/page/"
    dom = dump_dom(url, chromium=chromium, budget_ms=4000)
    assert 'class="value-line"' in dom and 'class="return-line"' in dom
    assert dom.count(f'data-points="{len(DAYS)}"') == 2  # both charts through every day
    assert dom.count(f'data-from="{DAYS[6]}"') == 2  # the rebuilt days shaded on both
    assert dom.count('class="incomplete"') == 2
    assert f"rebuilding from {DAYS[6]}" in dom and "Portfolio P_PAGE" in dom

    shot = read_png(screenshot(url, tmp_path / "portfolio.png", chromium=chromium, budget_ms=4000, window=(1100, 800)))
    colors = shot.colors(step=3)
    near = lambda want: any(all(abs(a - b) <= 40 for a, b in zip(c, want)) for c in colors)  # noqa: E731
    assert near((0x09, 0x69, 0xDA)), "no value line"
    assert near((0x1A, 0x7F, 0x37)), "no return line"
    assert near((0xFD, 0xE3, 0xA6)), "no shading of the rebuilt days"  # amber at 35% over white


def test_an_unknown_portfolio_says_so(chromium: str, base: str) -> None:
    dom = dump_dom(f"{base}/portfolios/NOPE/page/", chromium=chromium, budget_ms=3000)
    assert "no portfolio 'NOPE'</p>" in dom and 'class="value-line"' not in dom
