"""The OpenAPI 3.1 document of the web API, built from the route registry alone (every
route served is a route registered, so every route served is described) and the response
models' JSON schemas.

Security is stated as the worker is configured: with EPOCHFLOW_API_TOKEN set, operations
that need the token list the bearer scheme; every operation also says its access class in
`x-epochflow-access` (open, read, write).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

from pydantic.json_schema import models_json_schema

from epochflow.config import Settings
from epochflow.schemas.fields import MAX_ID_LENGTH
from epochflow.web import formats
from epochflow.web.access import Access, needs_token
from epochflow.web.responses import ALL_BODIES, ErrorBody
from epochflow.web.routes import FORMAT_PARAMETER, PATH_PARAMETERS, Operation, Route

OPENAPI_VERSION = "3.1.0"
_SCHEMAS = "#/components/schemas/"
_STATUS_TEXT = {
    400: "Bad parameters",
    401: "Token missing or malformed",
    403: "Wrong token",
    404: "Not found",
    406: "CSV asked for, but this route has no rows to write as CSV",
    413: "Body too large",
    422: "Invalid body",
    500: "Internal error",
    503: "Database not configured or unavailable",
}


def _version() -> str:
    try:
        return metadata.version("epochflow")
    except metadata.PackageNotFoundError:
        return "0"


# one parameter every GET takes, described once (`$ref`ed by each GET operation)
SHARED_PARAMETERS: dict[str, Any] = {
    FORMAT_PARAMETER: {
        "name": FORMAT_PARAMETER,
        "in": "query",
        "required": False,
        "description": (
            "json (default) or csv; without it, `Accept: text/csv` preferred over application/json asks for CSV. "
            "CSV is the body's rows: a header row, then one line per row, values written as in JSON (exact "
            "decimals, ISO dates, empty for null). A route without rows answers 406 to a CSV request."
        ),
        "schema": {"enum": list(formats.FORMATS), "default": formats.JSON},
    }
}


def component_schemas() -> dict[str, Any]:
    _, defs = models_json_schema(
        [(model, "serialization") for model in ALL_BODIES], ref_template=_SCHEMAS + "{model}"
    )
    return dict(defs.get("$defs", {}))


def _ref(model: type) -> dict[str, str]:
    return {"$ref": _SCHEMAS + model.__name__}


def _error(status: int, description: str | None = None) -> dict[str, Any]:
    return {
        "description": description or _STATUS_TEXT.get(status, "Error"),
        "content": {"application/json": {"schema": _ref(ErrorBody)}},
    }


def _operation(route: Route, method: str, op: Operation, settings: Settings) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "description": PATH_PARAMETERS[name],
         "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": r"^[^|\s]+$"}}
        for name in route.path_parameters
    ]
    parameters += [
        {"name": p.name, "in": "query", "required": p.required, "description": p.description, "schema": dict(p.schema)}
        for p in op.query
    ]
    if method == "get":
        parameters.append({"$ref": f"#/components/parameters/{FORMAT_PARAMETER}"})
    ok: dict[str, Any] = {"description": "OK"}
    has_rows = op.response is not None and op.response.csv_rows is not None
    if op.response is not None:
        ok["content"] = {op.content_type: {"schema": _ref(op.response)}}
        if has_rows:
            columns = ", ".join(op.response.csv_columns())
            ok["content"][formats.CSV_MEDIA_TYPE] = {
                "schema": {"type": "string", "description": f"The `{op.response.csv_rows}` rows; columns: {columns}"}
            }
    else:
        shape = "object" if op.content_type == "application/json" else "string"
        ok["content"] = {op.content_type: {"schema": {"type": shape}}}
    responses: dict[str, Any] = {"200": ok}
    errors: dict[int, str | None] = dict(op.errors)
    if route.path_parameters or op.query or method == "get":
        errors.setdefault(400, None)
    if method == "get" and not has_rows:
        errors.setdefault(406, None)
    if op.access is not Access.OPEN:
        errors.setdefault(401, None)
        errors.setdefault(403, None)
    if op.request_body is not None:
        errors.setdefault(413, None)
    if op.reads_database:
        errors.setdefault(503, None)
    errors.setdefault(500, None)
    for status in sorted(errors):
        responses[str(status)] = _error(status, errors[status])
    document: dict[str, Any] = {
        "operationId": f"{method}_{_slug(route.path)}",
        "summary": op.summary,
        "tags": [route.tag],
        "parameters": parameters,
        "responses": responses,
        "x-epochflow-access": op.access.value,
        "security": [{"bearerAuth": []}] if needs_token(op.access, settings) else [],
    }
    if op.description:
        document["description"] = op.description
    if op.request_body is not None:
        document["requestBody"] = dict(op.request_body)
    return document


def _slug(path: str) -> str:
    words = [part.strip("{}") for part in path.strip("/").split("/") if part]
    return "_".join(words) or "root"


def _unregistered(path: str, methods: Iterable[str], summary: str) -> dict[str, Any]:
    """A route served without going through the registry (Faust's own views, or a module
    that called `app.page` itself): listed so the document still names everything served,
    and marked as the guard treats it, as admin."""
    return {
        method: {
            "operationId": f"{method}_{_slug(path)}",
            "summary": summary or "Not in epochflow's route registry",
            "description": "Not declared through epochflow's route registry; the access guard treats it as admin.",
            "tags": ["unregistered"],
            "responses": {"200": {"description": "OK"}, "401": _error(401), "403": _error(403)},
            "x-epochflow-access": Access.WRITE.value,
        }
        for method in sorted(methods)
    }


def build_document(
    routes: Iterable[Route] | Mapping[str, Route],
    settings: Settings,
    unregistered: Mapping[str, tuple[Iterable[str], str]] | None = None,
) -> dict[str, Any]:
    """The document of `routes`, plus `unregistered` routes served anyway: path ->
    (lower-case HTTP methods, summary)."""
    every = sorted(routes.values() if isinstance(routes, Mapping) else routes, key=lambda r: r.path)
    paths: dict[str, Any] = {}
    for route in every:
        paths[route.path] = {
            method: _operation(route, method, op, settings) for method, op in sorted(route.operations.items())
        }
    for path, (methods, summary) in sorted((unregistered or {}).items()):
        if path not in paths:
            paths[path] = _unregistered(path, methods, summary)
    tags = sorted({route.tag for route in every} | ({"unregistered"} if len(paths) > len(every) else set()))
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "epochflow",
            "version": _version(),
            "description": (
                "Positions, valuations and the state of reprocessing, read from PostgreSQL, in each key's "
                "current epoch. Decimal figures are exact decimal strings; dates are YYYY-MM-DD. Errors "
                "answer {\"error\": \"...\"}. With EPOCHFLOW_API_TOKEN set, write and admin routes need "
                "Authorization: Bearer <token> (reads too with EPOCHFLOW_API_READS_NEED_TOKEN=true); "
                "/health/ and /metrics/ stay open."
            ),
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "schemas": component_schemas(),
            "parameters": dict(SHARED_PARAMETERS),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }

