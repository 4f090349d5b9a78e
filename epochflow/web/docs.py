"""The interactive API page: Swagger UI at `/docs/`, reading this worker's OpenAPI document
(`/openapi.json`). Its script, style sheet and icons come from the `swagger-ui-bundle`
package and are served by the worker itself (`/docs/{asset}`), so the page works with no
network beyond the worker. The page and its files hold no data: they are open; the
document and every call made from the page keep their own access class."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from swagger_ui_bundle import swagger_ui_path

from epochflow.web.access import Access
from epochflow.web.params import ApiError
from epochflow.web.routes import ApiView, Operation, route

# the files of the bundle the page uses, and their media types
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
ASSET_CACHE = {"Cache-Control": "public, max-age=86400"}

# relative links: the page also works behind a proxy that serves the API under a prefix
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>epochflow API</title>
  <link rel="stylesheet" href="swagger-ui.css">
  <link rel="icon" type="image/png" href="favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="favicon-16x16.png" sizes="16x16">
  <style>html { box-sizing: border-box; overflow-y: scroll; } body { margin: 0; background: #fafafa; }</style>
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="swagger-ui-bundle.js" charset="UTF-8"></script>
  <script src="swagger-ui-standalone-preset.js" charset="UTF-8"></script>
  <script>
    window.onload = function () {
      window.ui = SwaggerUIBundle({
        url: new URL("../openapi.json", window.location.href).href,
        dom_id: "#swagger-ui",
        deepLinking: true,
        validatorUrl: null,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        plugins: [SwaggerUIBundle.plugins.DownloadUrl],
        layout: "StandaloneLayout"
      });
    };
  </script>
</body>
</html>
"""


@cache
def asset(name: str) -> bytes:
    return (Path(swagger_ui_path) / name).read_bytes()


@route(
    "/docs/",
    tag="meta",
    get=Operation(
        "This API, interactive (Swagger UI over /openapi.json)",
        Access.OPEN,
        None,
        content_type="text/html",
        description="Served with its script and style sheet by the worker itself: no other site is reached.",
    ),
)
class DocsPage(ApiView):
    async def get(self, request):
        return self.html(PAGE)


@route(
    "/docs/{asset}",
    tag="meta",
    get=Operation(
        "A file of the interactive API page (Swagger UI's script, style sheet, icons)",
        Access.OPEN,
        None,
        content_type="application/octet-stream",
        errors={404: "Not a file of the page"},
    ),
)
class DocsAsset(ApiView):
    async def get(self, request, asset: str):
        media_type = ASSETS.get(asset)
        if media_type is None:
            raise ApiError(404, f"no file {asset!r} in the API page")
        return self.bytes(_asset(asset), content_type=media_type, headers=ASSET_CACHE)


def _asset(name: str) -> bytes:
    try:
        return asset(name)
    except OSError as error:  # a packaging mistake: say so instead of a bare 500
        raise ApiError(500, f"{name} is missing from the installed swagger-ui-bundle: {error}") from None
