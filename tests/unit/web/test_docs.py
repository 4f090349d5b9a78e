"""The interactive API page (epochflow/web/docs.py): Swagger UI at /docs/, its script and
style sheet served by the worker itself (no other site named in the page), pointing at
the worker's OpenAPI document, open even when reads need the token."""

from __future__ import annotations  # noqa: I001  (served loads the app before docs registers its routes)

import re

from tests.unit.web.served import TOKEN, client, settings
from epochflow.web.docs import ASSETS


async def test_the_page_and_its_files_are_served_locally() -> None:
    async with client(settings(api_token=TOKEN, api_reads_need_token=True)) as http:
        page = await http.get("/docs/")
        assert page.status == 200 and page.content_type == "text/html"
        html = await page.text()
        assert "SwaggerUIBundle" in html and "../openapi.json" in html
        assert not re.search(r"(https?:)?//[\w.-]+\.\w+/", html), "the page names another site"
        linked = set(re.findall(r'(?:src|href)="([^"]+)"', html))
        assert linked == set(ASSETS)
        for name in sorted(linked):
            asset = await http.get(f"/docs/{name}")
            assert asset.status == 200, name
            assert asset.content_type == ASSETS[name]
            assert len(await asset.read()) > 100, name
        script = await (await http.get("/docs/swagger-ui-bundle.js")).text()
        assert "SwaggerUIBundle" in script


async def test_only_the_pages_files_are_served() -> None:
    async with client(settings()) as http:
        for name in ("index.html", "..%2Fswagger-ui.css", "swagger-ui.js.map", "%2e%2e"):
            response = await http.get(f"/docs/{name}")
            assert response.status == 404, name


async def test_the_page_is_in_the_document() -> None:
    async with client(settings()) as http:
        document = await (await http.get("/openapi.json")).json()
    assert document["paths"]["/docs/"]["get"]["x-epochflow-access"] == "open"
    assert "/docs/{asset}" in document["paths"]
