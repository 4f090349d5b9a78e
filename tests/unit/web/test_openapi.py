"""The OpenAPI document comes from the route registry, so every route the web modules
serve is described: checked against the views the Faust app actually registered."""

from __future__ import annotations

import re
from typing import Any

import pytest
from faust.web import View

from epochflow.web.access import Access  # noqa: I001  (after served: it loads the app first)
from epochflow.web.api import unregistered_views
from epochflow.web.openapi import build_document
from epochflow.web.routes import ROUTES, Operation, route, served_methods
from tests.unit.web.served import TOKEN, app, client, settings

OUR_MODULES = ("epochflow.web.views", "epochflow.web.api", "epochflow.web.docs")
EXPECTED_PATHS = {
    "/health/",
    "/metrics/",
    "/ingest/",
    "/openapi.json",
    "/portfolios/{portfolio_id}/positions/",
    "/portfolios/{portfolio_id}/support/",
    "/positions/{portfolio_id}/{security_id}/history/",
    "/positions/{portfolio_id}/{security_id}/snapshots/",
    "/positions/{portfolio_id}/{security_id}/lineage/",
    "/valuation-jobs/",
    "/reprocessing/jobs/",
    "/reprocessing/triggers/",
    "/portfolios/{portfolio_id}/transactions/",
    "/docs/",
    "/docs/{asset}",
}


def document(**changes: Any) -> dict[str, Any]:
    return build_document(ROUTES, settings(**changes), unregistered_views(app.web.views))


def our_views() -> dict[str, Any]:
    return {path: view for path, view in app.web.views.items() if type(view).__module__ in OUR_MODULES}


def test_every_page_our_modules_registered_is_in_the_document_with_its_methods() -> None:
    paths = document()["paths"]
    views = our_views()
    assert set(views) == EXPECTED_PATHS
    for path, view in views.items():
        assert path in paths, f"{path} is served but not documented"
        served = {m.lower() for m in view.get_methods()} - {"head", "options"}
        assert served == set(paths[path]), f"{path}: serves {served}, documents {set(paths[path])}"


def test_every_registered_route_is_served() -> None:
    assert set(ROUTES) <= set(app.web.views)


def test_every_reference_resolves_and_every_path_parameter_is_declared() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    schemas = doc["components"]["schemas"]
    refs = re.findall(r"'\$ref': '#/components/schemas/(\w+)'", repr(doc))
    assert refs and all(ref in schemas for ref in refs)
    shared = re.findall(r"'\$ref': '#/components/parameters/(\w+)'", repr(doc))
    assert shared and all(ref in doc["components"]["parameters"] for ref in shared)
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "path"}
            if path in ROUTES:
                assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)
                assert "200" in operation["responses"] and "500" in operation["responses"]


def test_each_operation_states_its_access_and_security_follows_the_configuration() -> None:
    open_doc, write_only, everything = document(), document(api_token=TOKEN), document(
        api_token=TOKEN, api_reads_need_token=True
    )
    ingest, health = ("/ingest/", "post"), ("/health/", "get")
    positions = ("/portfolios/{portfolio_id}/positions/", "get")

    def op(doc: dict[str, Any], where: tuple[str, str]) -> dict[str, Any]:
        return doc["paths"][where[0]][where[1]]

    assert [op(open_doc, w)["x-epochflow-access"] for w in (ingest, positions, health)] == ["write", "read", "open"]
    assert op(open_doc, ingest)["security"] == []
    assert op(write_only, ingest)["security"] == [{"bearerAuth": []}]
    assert op(write_only, positions)["security"] == []
    assert op(everything, positions)["security"] == [{"bearerAuth": []}]
    assert op(everything, health)["security"] == []
    assert "401" in op(open_doc, ingest)["responses"] and "401" not in op(open_doc, health)["responses"]


def test_a_route_served_outside_the_registry_is_listed_as_admin() -> None:
    doc = build_document(ROUTES, settings(), {"/stray/": (["get"], "A stray view.")})
    assert doc["paths"]["/stray/"]["get"]["x-epochflow-access"] == "write"
    assert doc["paths"]["/stray/"]["get"]["summary"] == "A stray view."


def test_a_view_serving_a_method_it_does_not_document_is_refused() -> None:
    class Both(View):
        async def get(self, request):  # pragma: no cover
            return None

        async def post(self, request):  # pragma: no cover
            return None

    registry: dict = {}
    serve = route("/both/", tag="t", get=Operation("only get", Access.READ), page=lambda path: (lambda v: v),
                  registry=registry)
    with pytest.raises(TypeError, match="documents"):
        serve(Both)
    assert served_methods(Both) == {"get", "post"} and registry == {}


def test_a_path_parameter_nobody_described_is_refused() -> None:
    class One(View):
        async def get(self, request, account: str):  # pragma: no cover
            return None

    with pytest.raises(TypeError, match="account"):
        route("/accounts/{account}/", tag="t", get=Operation("x", Access.READ), page=lambda path: (lambda v: v),
              registry={})(One)


def test_a_path_registered_twice_is_refused() -> None:
    class One(View):
        async def get(self, request):  # pragma: no cover
            return None

    registry: dict = {}
    serve = route("/once/", tag="t", get=Operation("x", Access.READ), page=lambda path: (lambda v: v), registry=registry)
    serve(One)
    with pytest.raises(ValueError, match="twice"):
        route("/once/", tag="t", get=Operation("x", Access.READ), page=lambda path: (lambda v: v), registry=registry)(One)


async def test_the_document_is_served_and_describes_every_route() -> None:
    async with client(settings()) as http:
        response = await http.get("/openapi.json")
        assert response.status == 200
        served = await response.json()
    assert EXPECTED_PATHS <= set(served["paths"])
    assert served["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
