"""The one table from errors to HTTP status and the error envelope
`{"error": {"code", "message", "details"}}`; every handler answers with it.
WebSocket close codes (`Close`) sit beside it. Database errors arrive here
already translated (`storage.errors`)."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import IntEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import errors as e
from storage.errors import TRANSLATED, translate

log = logging.getLogger("bidi.api")

class Close(IntEnum):
    """Why the server closes a WebSocket (4000-4999: the application's own)."""

    RESTARTING = 1012       # the replica's event stream restarted: resume with `since`
    SLOW_CLIENT = 4008      # too many frames waiting unread: resume with `since`
    TOO_MANY_FRAMES = 4029  # far past the frame rate
    BAD_TOKEN = 4401        # a bad, expired or revoked token
    FORBIDDEN_TOPIC = 4403  # a topic of another organization


STATUS: dict[type[e.BidiError], int] = {
    e.MalformedJSON: 400,
    e.Invalid: 422,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.Conflict: 409,
    e.RateLimited: 429,
    e.Unavailable: 503,
    e.ProviderError: 502,
    e.ConfigError: 500,
    e.StartupError: 503,
}

_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
    413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid",
    429: "rate_limited", 502: "provider_error", 503: "unavailable",
}


def envelope(status: int, code: str, message: str, details: Any = None,
             headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


def status_of(exc: e.BidiError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


async def _bidi_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.BidiError)
    return error_response(exc)


def error_response(exc: e.BidiError) -> JSONResponse:
    """The envelope for one of our errors, with its status (and Retry-After)."""
    headers = None
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers = {"Retry-After": str(max(1, round(retry_after)))}
    details = exc.details
    if isinstance(exc, e.Invalid) and exc.field and details is None:
        details = {"field": exc.field}
    return envelope(status_of(exc), exc.code, exc.message, details, headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_response(exc)


def validation_response(exc: RequestValidationError) -> JSONResponse:
    """A body or parameter that does not match the route's schema: 400 for
    JSON that does not parse, else 422 listing each mismatch."""
    errors = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    if any(err["type"] == "json_invalid" for err in errors):
        return envelope(400, "malformed_json", "request body is not valid JSON", errors)
    return envelope(422, "validation_error", "request does not match the schema", errors)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
        # FastAPI's body parsing turns json.loads' RecursionError into a 400.
        return error_response(e.MalformedJSON("the JSON is nested too deeply"))
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return envelope(exc.status_code, code, str(exc.detail), headers=exc.headers)


BAD_DATA = TRANSLATED
# Redis down or unreachable: redis-py raises its own errors, and OS-level
# ones (a refused or reset socket) can come through as they are.
DEPENDENCY_DOWN = (RedisError, ConnectionError)
EXPECTED = (e.BidiError, *BAD_DATA, *DEPENDENCY_DOWN)  # what a raw-ASGI route answers the same way
RETRY_AFTER = 1.0


def expected_response(exc: Exception) -> JSONResponse:
    """The envelope for an error in EXPECTED. Never a database message: its
    DETAIL can quote another user's data (`Key (email)=(...) already exists`)."""
    if isinstance(exc, e.BidiError):
        return error_response(exc)
    if isinstance(exc, DEPENDENCY_DOWN):
        log.warning("a dependency is unavailable: %s", type(exc).__name__)
        return error_response(e.Unavailable("a service the API needs is unavailable; retry",
                                            retry_after=RETRY_AFTER))
    # A database error outside a transaction scope: mapped as inside one.
    mapped = translate(exc)
    if isinstance(mapped, e.BidiError):
        return error_response(mapped)
    return envelope(500, "internal_error", "internal error")


async def _expected(_: Request, exc: Exception) -> JSONResponse:
    return expected_response(exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return unexpected_response(request.method, request.url.path, exc)


def unexpected_response(method: str, path: str, exc: Exception) -> JSONResponse:
    """A bug's 500: logged with its traceback, answered with the envelope."""
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return envelope(500, "internal_error", "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.BidiError, _bidi_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for kind in (*BAD_DATA, *DEPENDENCY_DOWN):
        app.add_exception_handler(kind, _expected)
    app.add_exception_handler(Exception, _unexpected)
