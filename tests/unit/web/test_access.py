"""The access guard in front of every route: bearer token for writes and admin routes
(reads too when configured), open health and metrics, body size refused from its
Content-Length, JSON errors. Served in-process; no broker, no database."""

from __future__ import annotations

import pytest
from aiohttp import web

from epochflow.web import views  # noqa: I001
from epochflow.web.access import Access, check_bearer, is_loopback, needs_token, require_token_when_exposed
from tests.unit.web.served import TOKEN, client, settings

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


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
                                            ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.5", False),
                                            ("api.example.com", False)])
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10"])
def test_a_worker_listening_beyond_loopback_without_a_token_refuses_to_start(host: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        require_token_when_exposed(settings(web_host=host, api_token=""), environ={})
    message = str(stopped.value)
    assert "EPOCHFLOW_API_TOKEN" in message and "EPOCHFLOW_API_ALLOW_NO_TOKEN" in message and host in message


def test_a_token_or_loopback_lets_the_worker_start() -> None:
    require_token_when_exposed(settings(web_host="0.0.0.0", api_token=TOKEN), environ={})
    require_token_when_exposed(settings(web_host="127.0.0.1", api_token=""), environ={})


def test_the_explicit_opt_out_starts_and_says_so_loudly(caplog: pytest.LogCaptureFixture) -> None:
    require_token_when_exposed(settings(web_host="0.0.0.0", api_token=""), environ={"EPOCHFLOW_API_ALLOW_NO_TOKEN": "true"})
    [record] = [r for r in caplog.records if "EPOCHFLOW_API_ALLOW_NO_TOKEN" in r.getMessage()]
    assert record.levelname == "CRITICAL" and "open to anyone" in record.getMessage()


@pytest.mark.parametrize("value", ["false", "", "maybe"])
def test_anything_but_true_is_no_opt_out(value: str) -> None:
    with pytest.raises(SystemExit, match="EPOCHFLOW_API"):
        require_token_when_exposed(settings(web_host="0.0.0.0", api_token=""), environ={"EPOCHFLOW_API_ALLOW_NO_TOKEN": value})


def test_the_worker_process_stops_at_start_naming_the_variables(tmp_path) -> None:
    """`epochflow worker ROLE` exits before it serves anything (no broker is needed to get there)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("EPOCHFLOW_", "DATABASE_URL"))}
    env.update({"EPOCHFLOW_WEB_HOST": "0.0.0.0", "EPOCHFLOW_DATA_DIR": str(tmp_path)})
    done = subprocess.run([sys.executable, "-m", "epochflow", "worker", "sink"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode != 0
    assert "EPOCHFLOW_API_TOKEN" in done.stderr and "EPOCHFLOW_API_ALLOW_NO_TOKEN" in done.stderr
