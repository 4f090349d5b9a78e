"""The read views' checks, before any database is reached: bad parameters are 400 with
the parameter named, and without DATABASE_URL a valid read is a clear 503. (What the
views return from real data is in tests/integration/test_api.py.)"""

from __future__ import annotations

import pytest

from epochflow.web import api  # noqa: I001
from tests.unit.web.served import client, settings

BAD = [
    ("/portfolios/P1/positions/?as_of=2026-02-30", "as_of"),
    ("/portfolios/P1/positions/?as_of=yesterday", "as_of"),
    ("/portfolios/P1/positions/?asof=2026-03-02", "asof"),
    ("/portfolios/P1/support/?x=1", "x"),
    ("/positions/P1/S1/history/?from=2026-03-05&to=2026-03-01", "from"),
    ("/positions/P1/S1/history/?from=03/05/2026", "from"),
    ("/positions/P1/S1/snapshots/?to=2026-13-01", "to"),
    ("/positions/P1/S1/snapshots/?from=2026-03-02&from=2026-03-03", "more than once"),
    ("/positions/P1/S1/lineage/?epoch=1", "epoch"),
    ("/valuation-jobs/?status=DONE", "status"),
    ("/valuation-jobs/?status=pending", "status"),
    ("/valuation-jobs/?limit=0", "limit"),
    ("/valuation-jobs/?limit=100000", "limit"),
    ("/valuation-jobs/?offset=-1", "offset"),
    ("/valuation-jobs/?epoch=-1", "epoch"),
    ("/valuation-jobs/?epoch=one", "epoch"),
    ("/valuation-jobs/?portfolio_id=%00", "portfolio_id"),
    ("/valuation-jobs/?epoch=2147483648", "epoch"),
    ("/valuation-jobs/?offset=2147483648", "offset"),
    ("/valuation-jobs/?security_id=A%7CB", "security_id"),
    ("/reprocessing/jobs/?subject=price%7CS%01", "subject"),
    ("/reprocessing/jobs/?offset=99999999999", "offset"),
    ("/positions/P%01/S1/history/", "portfolio_id"),
    ("/reprocessing/jobs/?status=SKIPPED_NO_POSITION", "status"),
    ("/reprocessing/triggers/?all=1", "all"),
    ("/portfolios/P1/transactions/?from=2026-03-05&to=2026-03-01", "from"),
    ("/portfolios/P1/transactions/?security_id=A%7CB", "security_id"),
    ("/portfolios/P1/transactions/?limit=1001", "limit"),
    ("/portfolios/P1/transactions/?epoch=1", "epoch"),
    ("/portfolios/P1/transactions/?format=tsv", "format"),
]
HOSTILE_IDS = ["a%00b", "%0A", "x" * 257, "%ED%A0%80", "%C0%AF"]
VALID = [
    "/portfolios/P1/positions/",
    "/portfolios/P1/positions/?as_of=2026-03-02",
    "/portfolios/P1/support/",
    "/positions/P1/S1/history/?from=2026-03-01&to=2026-03-02",
    "/positions/P1/S1/snapshots/",
    "/positions/P1/S1/lineage/",
    "/valuation-jobs/?status=PENDING&epoch=0&limit=1000&offset=0",
    "/reprocessing/jobs/",
    "/reprocessing/jobs/?subject=fx%7CEUR%7CUSD&offset=2147483647",
    "/valuation-jobs/?epoch=2147483647",
    "/reprocessing/triggers/?all=true",
    "/portfolios/P1/transactions/?from=2026-03-01&to=2026-03-02&security_id=S1&limit=1000&offset=5",
    "/portfolios/P1/transactions/?format=csv",
    "/positions/%27%3BDROP--TABLE--position_state%3B--/S1/lineage/",
    "/positions/%27OR%271%27=%271/S1/history/",
]


@pytest.fixture(autouse=True)
def no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "settings", settings(database_url=""))


@pytest.mark.parametrize("path, named", BAD)
async def test_bad_parameters_are_400_naming_the_parameter(path: str, named: str) -> None:
    async with client(settings()) as http:
        response = await http.get(path)
        body = await response.json()
    assert response.status == 400, body
    assert named in body["error"]


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
async def test_hostile_ids_are_refused_or_harmless_never_500(hostile: str) -> None:
    async with client(settings()) as http:
        for path in (f"/portfolios/{hostile}/positions/", f"/positions/{hostile}/S1/history/",
                     f"/positions/P1/{hostile}/lineage/", f"/portfolios/{hostile}/support/"):
            response = await http.get(path)
            assert response.status in (400, 404, 503), (path, response.status, await response.text())
            assert "error" in await response.json()


@pytest.mark.parametrize("path", VALID)
async def test_a_valid_read_without_a_database_is_a_clear_503(path: str) -> None:
    async with client(settings()) as http:
        response = await http.get(path)
        body = await response.json()
    assert (response.status, body) == (503, {"error": "no database configured: set DATABASE_URL"})
