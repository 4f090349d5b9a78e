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

Safe by default when exposed: every worker serves the write routes (`POST /ingest/`, and
Faust's admin views), so a worker whose web server listens beyond loopback refuses to
start without EPOCHFLOW_API_TOKEN, unless EPOCHFLOW_API_ALLOW_NO_TOKEN=true says that is
intended (then it logs so, loudly, at start).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
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


ALLOW_NO_TOKEN = "EPOCHFLOW_API_ALLOW_NO_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether a bind address only listens on this machine ("0.0.0.0", "::", "" and any
    name but localhost count as exposed: a name may resolve to anything)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def open_exposure(settings: Settings, allow_no_token: str | None) -> str | None:
    """None when the worker may start; else why not. A worker listening beyond loopback
    without a token would let anyone who reaches its port publish events."""
    if settings.api_token or is_loopback(settings.web_host):
        return None
    choice = (allow_no_token or "").strip().lower()
    if choice in ("true", "1", "yes", "on"):
        return None
    if choice not in ("", "false", "0", "no", "off"):
        return f"{ALLOW_NO_TOKEN} must be true or false, not {allow_no_token!r}"
    return (
        f"refusing to start: the web server listens on {settings.web_host}:{settings.web_port} "
        "(EPOCHFLOW_WEB_HOST), beyond loopback, and serves write routes (POST /ingest/) without a "
        f"token. Set EPOCHFLOW_API_TOKEN, or bind EPOCHFLOW_WEB_HOST=127.0.0.1, or set "
        f"{ALLOW_NO_TOKEN}=true to serve every route to anyone who can reach the port."
    )


def require_token_when_exposed(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """Stop the worker (SystemExit, with the reason) when it would serve write routes beyond
    loopback without a token; log the explicit opt-out loudly."""
    environ = os.environ if environ is None else environ
    problem = open_exposure(settings, environ.get("EPOCHFLOW_API_ALLOW_NO_TOKEN"))
    if problem:
        log.critical("web.refused %s", problem)
        raise SystemExit(problem)
    if not settings.api_token and not is_loopback(settings.web_host):
        log.critical(
            "web.open WARNING: %s=true: every route, writes included, is open to anyone who can reach %s:%s",
            ALLOW_NO_TOKEN, settings.web_host, settings.web_port,
        )


def install(web_app: web.Application, settings: Settings, access_of: Callable[[str, str], Access | None]) -> None:
    """Put the guard in front of every route of the worker's web server, once the worker
    is known to be allowed to serve them (`require_token_when_exposed`)."""
    require_token_when_exposed(settings)
    web_app.middlewares.append(guard(settings, access_of))
