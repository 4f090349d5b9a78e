"""Who may call what, and how big a request may be.

Every operation of the route registry has an access class: OPEN (health, metrics), READ
(the read API) or WRITE (ingest, and any write or admin route). With EPOCHFLOW_API_TOKEN
set, WRITE needs `Authorization: Bearer <token>`, READ too when
EPOCHFLOW_API_READS_NEED_TOKEN is true; without a token everything is open, as before.
A route the registry does not know (Faust's own /router/ and /table/ views) counts as
admin. A missing or malformed header answers 401, a wrong token 403; tokens are compared
in constant time.

The check runs as an aiohttp middleware in front of every route of the worker's web
server, so it also refuses an oversized body from its Content-Length before anything
reads it (413), and turns errors no view handled into JSON.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from aiohttp import web

from epochflow.config import Settings
from epochflow.web.params import ApiError

log = logging.getLogger("epochflow.web")


class Access(StrEnum):
    OPEN = "open"  # never needs a token
    READ = "read"  # needs the token when EPOCHFLOW_API_READS_NEED_TOKEN is true
    WRITE = "write"  # writes and admin: needs the token whenever one is configured


def needs_token(access: Access, settings: Settings) -> bool:
    if not settings.api_token or access is Access.OPEN:
        return False
    return settings.api_reads_need_token if access is Access.READ else True


def check_bearer(authorization: str | None, token: str) -> ApiError | None:
    """None when `authorization` carries `token`, else the refusal (401 or 403)."""
    challenge = {"WWW-Authenticate": 'Bearer realm="epochflow"'}
    if authorization is None:
        return ApiError(401, "this route needs a token: send Authorization: Bearer <token>", challenge)
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return ApiError(401, "the Authorization header must be 'Bearer <token>'", challenge)
    # bytes: compare_digest refuses str with non-ASCII characters (a 500 for a hostile header)
    if not hmac.compare_digest(credentials.encode("utf-8", "surrogateescape"), token.encode("utf-8")):
        return ApiError(403, "wrong token")
    return None


def refuse_oversized(content_length: int | None, limit: int) -> ApiError | None:
    if content_length is not None and content_length > limit:
        return ApiError(413, f"body larger than {limit} bytes")
    return None


def error_response(error: ApiError) -> web.Response:
    return web.json_response({"error": error.message}, status=error.status, headers=error.headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guard(settings: Settings, access_of: Callable[[str, str], Access | None]) -> Any:
    """The middleware: `access_of(path_pattern, method)` is the registry's access class of
    an operation (None: not in the registry, treated as admin)."""

    @web.middleware
    async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        match = request.match_info
        if match.http_exception is not None:  # no such route, or not with this method
            status = match.http_exception.status
            return error_response(ApiError(status, f"{match.http_exception.reason}: {request.method} {request.path}"))
        method = "GET" if request.method == "HEAD" else request.method
        access = access_of(match.route.resource.canonical if match.route.resource else "", method) or Access.WRITE
        if needs_token(access, settings):
            refusal = check_bearer(request.headers.get("Authorization"), settings.api_token)
            if refusal is not None:
                return error_response(refusal)
        too_big = refuse_oversized(request.content_length, settings.api_max_body_bytes)
        if too_big is not None:
            return error_response(too_big)
        try:
            return await handler(request)
        except ApiError as error:
            return error_response(error)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            return error_response(ApiError(error.status, error.reason))
        except Exception:
            log.exception("web.error method=%s path=%s", request.method, request.path)
            return error_response(ApiError(500, "internal error; see the worker's log"))

    return guard_middleware


def install(web_app: web.Application, settings: Settings, access_of: Callable[[str, str], Access | None]) -> None:
    web_app.middlewares.append(guard(settings, access_of))
