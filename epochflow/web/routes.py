"""The one registry of web routes: serving a route and documenting it are the same act.

`@route(path, tag=..., get=Operation(...))` registers the operation's documentation (its
access class, parameters, answers) and only then hands the view to `app.page`; it refuses
a view whose HTTP methods differ from the documented ones, or a path parameter nobody
described. The OpenAPI document (`epochflow.web.openapi`) and the access guard
(`epochflow.web.access`) both read this registry, and `ApiView` refuses query parameters
the registry does not list for the operation. Every GET also takes `format` (JSON or
CSV, `epochflow.web.formats`): `ApiView` answers a CSV request with the rows of the
operation's body, or 406 when that body has none.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from faust.web import View
from pydantic import BaseModel
from sqlalchemy.exc import InterfaceError, OperationalError

from epochflow.web import formats
from epochflow.web.access import Access
from epochflow.web.params import ApiError
from epochflow.web.responses import Body

log = logging.getLogger("epochflow.web")

METHODS = ("get", "post", "put", "patch", "delete")
PATH_PARAMETERS: dict[str, str] = {
    "portfolio_id": "The portfolio's id (1 to 256 printable characters, no space or '|').",
    "security_id": "The security's id (1 to 256 printable characters, no space or '|').",
    "asset": "A file of the interactive API page, e.g. swagger-ui-bundle.js.",
}
_PATH_PARAMETER = re.compile(r"{(\w+)}")
# PostgreSQL down, restarting or unreachable: asyncpg raises OSError subclasses on connect
DATABASE_UNAVAILABLE = (OSError, TimeoutError, OperationalError, InterfaceError)


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter of an operation."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    access: Access
    response: type[BaseModel] | None = None  # the 200 body (JSON); None: see content_type
    content_type: str = "application/json"
    description: str = ""
    query: tuple[Param, ...] = ()
    errors: Mapping[int, str] = field(default_factory=dict)  # answers besides 200 and the guard's
    request_body: Mapping[str, Any] | None = None  # an OpenAPI requestBody object
    reads_database: bool = False  # may answer 503 when DATABASE_URL is not configured


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    tag: str
    operations: Mapping[str, Operation]  # lower-case HTTP method -> operation

    @property
    def path_parameters(self) -> tuple[str, ...]:
        return tuple(_PATH_PARAMETER.findall(self.path))


ROUTES: dict[str, Route] = {}
FORMAT_PARAMETER = "format"  # taken by every GET: see epochflow.web.formats
# the body model whose rows the request being answered wants as CSV (None: JSON)
_CSV_OF: ContextVar[type[Body] | None] = ContextVar("epochflow_csv_of", default=None)


def served_methods(view: type[View]) -> set[str]:
    """The HTTP methods a Faust view implements itself (HEAD follows GET)."""
    return {method for method in METHODS if getattr(view, method) is not getattr(View, method)}


def route(
    path: str,
    *,
    tag: str,
    get: Operation | None = None,
    post: Operation | None = None,
    page: Callable[[str], Callable[[type[View]], type[View]]] | None = None,
    registry: dict[str, Route] | None = None,
) -> Callable[[type[View]], type[View]]:
    """Register `path`'s operations in `registry` (ROUTES) and serve the view with `page`
    (the app's `app.page`); tests pass both to check the rules without a Faust app."""
    routes = ROUTES if registry is None else registry
    operations = {method: op for method, op in (("get", get), ("post", post)) if op is not None}

    def decorator(view: type[View]) -> type[View]:
        served = served_methods(view)
        if served != set(operations):
            raise TypeError(f"{view.__name__} serves {sorted(served)} at {path} but documents {sorted(operations)}")
        undescribed = [name for name in _PATH_PARAMETER.findall(path) if name not in PATH_PARAMETERS]
        if undescribed:
            raise TypeError(f"{path}: describe the path parameters {undescribed} in PATH_PARAMETERS")
        if path in routes:
            raise ValueError(f"route {path} is registered twice")
        routes[path] = Route(path, tag, operations)
        if page is not None:
            return page(path)(view)
        from epochflow.app import app

        return app.page(path)(view)

    return decorator


def access_of(path: str, method: str) -> Access | None:
    """The access class of an operation (None when the registry does not know it)."""
    found = ROUTES.get(path)
    operation = found.operations.get(method.lower()) if found else None
    return operation.access if operation else None


class ApiView(View):
    """A view of the registry: query parameters it does not document are refused (a typo
    like `?form=` would otherwise be silently ignored), an `ApiError` raised anywhere in
    a handler becomes its JSON answer, and a GET asked for CSV answers its body's rows as
    CSV (406 when the body has none)."""

    async def dispatch(self, request: Any) -> Any:
        token = None
        try:
            operation = self._check_query(request)
            if operation is not None and self._method(request) == "get":
                if formats.requested(request.query, request.headers.get("Accept")) == formats.CSV:
                    token = _CSV_OF.set(formats.csv_body(operation.response))
            return await super().dispatch(request)
        except ApiError as error:
            return self.json({"error": error.message}, status=error.status, headers=error.headers or None)
        except DATABASE_UNAVAILABLE as error:
            log.warning("web.database_unavailable path=%s error=%r", request.path, error)
            return self.json({"error": f"database unavailable: {type(error).__name__}"}, status=503)
        finally:
            if token is not None:
                _CSV_OF.reset(token)

    def json(self, value: Any, *, status: int = 200, **options: Any) -> Any:
        """`value` as JSON, or, for a 200 answer to a CSV request, its rows as CSV."""
        model = _CSV_OF.get()
        if model is None or status != 200:
            return super().json(value, status=status, **options)
        headers = dict(options.get("headers") or {})
        headers["Content-Type"] = f"{formats.CSV_MEDIA_TYPE}; charset=utf-8"
        return self.bytes(formats.rows_csv(model, value).encode("utf-8"), status=status, headers=headers)

    @staticmethod
    def _method(request: Any) -> str:
        return "get" if request.method.lower() == "head" else request.method.lower()

    def _check_query(self, request: Any) -> Operation | None:
        found = ROUTES.get(self.view_path)
        method = self._method(request)
        operation = found.operations.get(method) if found else None
        if operation is None:
            return None
        known = {param.name for param in operation.query} | ({FORMAT_PARAMETER} if method == "get" else set())
        unknown = sorted(set(request.query) - known)
        if unknown:
            takes = ", ".join(sorted(known)) or "none"
            raise ApiError(400, f"unknown query parameter {unknown[0]!r} (this route takes: {takes})")
        repeated = sorted({name for name in request.query if len(request.query.getall(name)) > 1})
        if repeated:
            raise ApiError(400, f"query parameter {repeated[0]!r} is given more than once")
        return operation
