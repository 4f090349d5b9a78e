"""The worker's web views served in-process by aiohttp's test server, behind the access
guard configured with whatever settings a test wants: no broker, no Faust worker."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.fixtures.agents import load_app

load_app("api")  # before anything imports epochflow.app

import epochflow.web.views  # noqa: E402,F401  (registers every route)
from epochflow.app import app  # noqa: E402
from epochflow.app import settings as app_settings  # noqa: E402
from epochflow.config import Settings  # noqa: E402
from epochflow.web import access  # noqa: E402
from epochflow.web.routes import access_of  # noqa: E402

TOKEN = "s3cret-token"


def settings(**changes: Any) -> Settings:
    return dataclasses.replace(app_settings, **changes)


def _handler(view: Any):
    async def handle(request: web.Request) -> web.StreamResponse:
        return await view(request)

    return handle


def application(config: Settings, extra_routes: dict[str, Any] | None = None) -> web.Application:
    """Every view the app registered (and `extra_routes`: path -> handler, GET), guarded."""
    served = web.Application(middlewares=[access.guard(config, access_of)])
    for path, view in app.web.views.items():
        for method in view.get_methods():
            served.router.add_route(method, path, _handler(view))
    for path, handler in (extra_routes or {}).items():
        served.router.add_get(path, handler)
    return served


@asynccontextmanager
async def client(config: Settings, extra_routes: dict[str, Any] | None = None) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(application(config, extra_routes))) as test_client:
        yield test_client
