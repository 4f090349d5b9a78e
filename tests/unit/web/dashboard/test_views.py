"""The dashboard's page and routes (`epochflow/web/dashboard/views.py`), served by the
api role's app in-process: no broker, no database."""

from __future__ import annotations

import re

from epochflow.web.dashboard.views import page_html
from tests.unit.web.served import client, settings  # noqa: I001  (loads the app first)


async def test_the_page_is_served_and_never_cached() -> None:
    async with client(settings()) as served:
        response = await served.get("/dashboard/")
        assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
        assert await response.text() == page_html()


# -- the page --------------------------------------------------------------------------------


PANELS = ("keys-by-status", "valuation-queue", "reprocessing-queue", "watermark-lag", "fanout-progress",
          "throughput", "dead-letters")


def test_the_page_has_every_panel_with_a_heading() -> None:
    html = page_html()
    for panel in PANELS:
        assert re.search(rf'<section class="panel" id="{panel}"><h2>[^<]+</h2>', html), panel
    for element in ("status", "last-refresh", "business-date"):
        assert f'id="{element}"' in html


def test_the_page_is_self_contained_and_never_injects_markup() -> None:
    html = page_html()
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', html, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", html, re.I)
    assert "<script src" not in html and '<link rel="stylesheet"' not in html
    assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", html)
    assert "data.json" in html
