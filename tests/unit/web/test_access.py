"""The access guard in front of every route: bearer token for writes and admin routes
(reads too when configured), open health and metrics, body size refused from its
Content-Length, JSON errors. Served in-process; no broker, no database."""

from __future__ import annotations

import pytest
from aiohttp import web

from tests.unit.web.served import TOKEN, client, settings

from epochflow.web import views  # noqa: I001
from epochflow.web.access import Access, check_bearer, needs_token

BEARER = {"Authorization": f"Bearer {TOKEN}"}
READ_PATHS = ("/openapi.json", "/valuation-jobs/?limit=0", "/portfolios/P1/positions/?as_of=bad")


@pytest.mark.parametrize(
    "header, status",
    [(None, 401), ("", 401), ("Bearer", 401), ("Bearer   ", 401), ("Basic czNjcmV0", 401), (f"Token {TOKEN}", 401),
     ("Bearer wrong", 403), (f"Bearer {TOKEN}x", 403), ("Bearer tökén", 403), ("Bearer \udcff", 403)],
)
def test_a_missing_or_malformed_header_is_401_and_a_wrong_token_403(header: str | None, status: int) -> None:
    refusal = check_bearer(header, TOKEN)
    assert refusal is not None and refusal.status == status
    if status == 401:
        assert refusal.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"  BEARER   {TOKEN}  "])
def test_the_right_token_passes(header: str) -> None:
    assert check_bearer(header, TOKEN) is None


def test_what_needs_the_token() -> None:
    none, writes, everything = settings(), settings(api_token=TOKEN), settings(api_token=TOKEN, api_reads_need_token=True)
    assert [needs_token(a, none) for a in Access] == [False, False, False]
    assert [needs_token(a, writes) for a in Access] == [False, False, True]
    assert [needs_token(a, everything) for a in Access] == [False, True, True]


async def test_without_a_token_configured_everything_is_open() -> None:
    async with client(settings(api_token="")) as http:
        assert (await http.post("/ingest/", data=b"{")).status == 422  # reached the view
        assert (await http.get("/openapi.json")).status == 200


async def test_ingest_needs_the_token_reads_do_not() -> None:
    async with client(settings(api_token=TOKEN)) as http:
        missing = await http.post("/ingest/", data=b"[]")
        assert missing.status == 401 and "Bearer" in (await missing.json())["error"]
        assert missing.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = await http.post("/ingest/", data=b"[]", headers={"Authorization": "Bearer nope"})
        assert (wrong.status, await wrong.json()) == (403, {"error": "wrong token"})
        right = await http.post("/ingest/", data=b"{", headers=BEARER)
        assert right.status == 422  # past the guard: the body is what is wrong
        for path in READ_PATHS:
            assert (await http.get(path)).status in (200, 400), path
        assert (await http.get("/health/")).status == 200
        assert (await http.get("/metrics/")).status == 200


async def test_reads_need_the_token_when_configured_health_and_metrics_stay_open() -> None:
    async with client(settings(api_token=TOKEN, api_reads_need_token=True)) as http:
        for path in READ_PATHS:
            assert (await http.get(path)).status == 401, path
            assert (await http.get(path, headers={"Authorization": "Bearer nope"})).status == 403, path
            assert (await http.get(path, headers=BEARER)).status in (200, 400), path
        assert (await http.get("/health/")).status == 200
        assert (await http.get("/metrics/")).status == 200


async def test_a_route_outside_the_registry_is_admin() -> None:
    async def stray(request: web.Request) -> web.Response:
        return web.json_response({"stray": True})

    async with client(settings(api_token=TOKEN), {"/stray/": stray}) as http:
        assert (await http.get("/stray/")).status == 401
        assert (await http.get("/stray/", headers=BEARER)).status == 200
    async with client(settings(api_token=""), {"/stray/": stray}) as http:
        assert (await http.get("/stray/")).status == 200


async def test_an_oversized_body_is_413_from_its_content_length_before_it_is_read() -> None:
    async with client(settings(api_token=TOKEN, api_max_body_bytes=1000)) as http:
        response = await http.post("/ingest/", data=b"[" + b" " * 2000 + b"]", headers=BEARER)
        assert response.status == 413 and "1000 bytes" in (await response.json())["error"]
        # the token is checked first: an anonymous caller learns nothing about limits
        assert (await http.post("/ingest/", data=b" " * 2000)).status == 401


async def test_a_chunked_body_is_cut_off_at_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "settings", settings(api_max_body_bytes=1000))

    async def chunks():
        for _ in range(10):
            yield b" " * 500

    async with client(settings(api_max_body_bytes=1000)) as http:
        response = await http.post("/ingest/", data=chunks())
        assert response.status == 413


async def test_unknown_routes_and_methods_answer_json() -> None:
    async with client(settings()) as http:
        missing = await http.get("/no/such/route/")
        assert missing.status == 404 and "error" in await missing.json()
        wrong_method = await http.get("/ingest/")
        assert wrong_method.status == 405 and "error" in await wrong_method.json()


async def test_an_unexpected_error_is_a_json_500() -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    async with client(settings(), {"/broken/": broken}) as http:
        response = await http.get("/broken/")
        assert response.status == 500 and (await response.json())["error"].startswith("internal error")
