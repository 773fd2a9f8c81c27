"""The one place that maps errors to HTTP responses.

Every error, 4xx or 5xx, has one shape: ``{"error": {"code", "message", "details"}}``.
Domain errors carry their status and code (``service.errors``), and ``Retry-After`` when they
pass (the database away: ``DatabaseUnavailable``, translated from the driver's errors by
``service.db.unit_of_work``); request validation errors are 422 ``validation_error`` (400
``malformed_json`` when the body is not JSON at all); anything unexpected, a database error that
escaped the unit of work included, is a logged 500 ``internal_error`` that reveals nothing of
the server.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import ServiceError
from service.observability.request_id import HEADER as REQUEST_ID_HEADER
from service.observability.request_id import current_request_id

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable: not_found, validation_error, lease_lost...")
    message: str = Field(description="for humans: what is wrong, and where")
    details: Any = Field(default=None, description="structured context, when there is any")


class ErrorOut(BaseModel):
    """The body of every error response."""

    error: ErrorBody


_MEANINGS = {
    400: "malformed JSON (`malformed_json`), or a cursor this list did not give out (`bad_cursor`)",
    401: "no valid bearer token (`unauthorized`)",
    403: "the token's role does not allow this call (`forbidden`)",
    404: "no such resource (`not_found`)",
    409: "conflicts with the current state (`lease_lost`, `trial_finished`, `invalid_state`,"
    " `duplicate_name`, `idempotency_key_reused`, ...)",
    413: "the request body is over its limit (`payload_too_large`)",
    422: "invalid input (`validation_error`, `invalid_input`, `invalid_spec`)",
    503: "the database is unavailable or out of date (`database_unavailable`,"
    " `transaction_aborted`, `schema_out_of_date`); retry after `Retry-After` seconds",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting these error statuses with the error shape."""
    return {status: {"model": ErrorOut, "description": _MEANINGS[status]} for status in statuses}


API_ERRORS = error_responses(401, 403, 413, 422, 503)
"""What any /api route may answer: no token, a role too weak, a body too large, invalid
input, the database away."""


class ErrorResponse(JSONResponse):
    """An error body, which may echo what the client sent: JSON that strict UTF-8 JSON cannot
    carry (a lone surrogate, NaN) is escaped or written as a string instead of failing."""

    def render(self, content: Any) -> bytes:
        safe = _finite(content)
        try:
            text = json.dumps(safe, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            return text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: escape every non-ASCII character
            return json.dumps(safe, allow_nan=False, separators=(",", ":")).encode("ascii")


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float written as a string ("NaN", "Infinity")."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": jsonable_encoder(details)}}
    return ErrorResponse(body, status_code=status, headers=headers)


class BodyTooLarge(StarletteHTTPException):
    """The request body is over its limit (``service.api.limits`` raises it while the body
    streams in). An HTTP exception, so that FastAPI's body parsing lets it through instead of
    turning it into a 400."""

    def __init__(self, message: str, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=message)
        self.max_bytes = max_bytes


def too_large_response(exc: BodyTooLarge) -> JSONResponse:
    """413 ``payload_too_large``; ``details.max_bytes`` is the limit."""
    return error_response(413, "payload_too_large", str(exc.detail), {"max_bytes": exc.max_bytes})


async def _body_too_large(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyTooLarge)
    return too_large_response(exc)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers: dict[str, str] = {}
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.retry_after is not None:  # a passing condition (the database away): retry
        headers["Retry-After"] = str(exc.retry_after)
        logger.warning("%s %s: %s", request.method, request.url.path, exc.message)
    elif exc.status_code >= 500:
        logger.error("%s %s: %s", request.method, request.url.path, exc.message)
    return error_response(exc.status_code, exc.code, exc.message, exc.details, headers or None)


def _clean(error: dict[str, Any]) -> dict[str, Any]:
    out = {
        "loc": list(error.get("loc", ())),
        "msg": error.get("msg", ""),
        "type": error.get("type"),
    }
    if "input" in error and error.get("type") != "json_invalid":
        out["input"] = _echo(error["input"])
    return out


_ECHO_DEPTH = 8
_ECHO_CHARS = 4096


def _echo(value: Any) -> Any:
    """The invalid input, to show back: as it is unless it is raw bytes (a body that is not
    JSON), nested deeper than a few levels or large (it could not be encoded, or would make
    the answer larger than the question)."""
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes, not shown>"
    if _deeper_than(value, _ECHO_DEPTH):
        return f"<nested more than {_ECHO_DEPTH} levels, not shown>"
    if len(json.dumps(value, default=str)) > _ECHO_CHARS:
        return f"<more than {_ECHO_CHARS} characters as JSON, not shown>"
    return value


def _deeper_than(value: Any, levels: int) -> bool:
    """Whether ``value`` has containers nested more than ``levels`` deep (no recursion)."""
    frontier = [value]
    for _ in range(levels):
        frontier = [
            child
            for item in frontier
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
    return any(isinstance(item, dict | list) for item in frontier)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_clean(e) for e in exc.errors()]
    if any(e["type"] == "json_invalid" for e in errors):
        return error_response(400, "malformed_json", "the request body is not valid JSON", errors)
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if p != "body")
    message = f"{where}: {first['msg']}" if where else str(first["msg"])
    return error_response(422, "validation_error", message, errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), None, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    # Answered outside the request middleware, so the request id is echoed here.
    request_id = current_request_id()
    headers = {REQUEST_ID_HEADER: request_id} if request_id else None
    return error_response(500, "internal_error", "internal server error", headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(BodyTooLarge, _body_too_large)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
