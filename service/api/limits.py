"""The request body size limit: a pure ASGI middleware that refuses an oversized body with 413.

A body whose ``Content-Length`` is over the limit is refused before a byte of it is read. A body
sent without one (chunked) is counted as it streams in: the read that passes the limit raises
:class:`~service.api.errors.BodyTooLarge`, which stops the endpoint and is answered by the error
handlers. Either way the answer is ``413 {"error": {"code": "payload_too_large", "message",
"details": {"max_bytes": N}}}``.

Every request is held to the server's ``max_body_bytes`` (``HPO_MAX_BODY_BYTES``) unless a
:class:`RouteLimit` names another limit for its method and path: the checkpoint upload takes
``HPO_CHECKPOINT_MAX_BYTES``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import BodyTooLarge, too_large_response

_MIB = 1024 * 1024


@dataclass(frozen=True)
class BodyLimit:
    """At most ``max_bytes`` of body; ``setting`` names the environment variable that sets it."""

    max_bytes: int
    setting: str

    def error(self) -> BodyTooLarge:
        message = (
            f"the request body may be at most {self.max_bytes} bytes "
            f"({self.max_bytes / _MIB:.3g} MiB; {self.setting} sets the limit)"
        )
        return BodyTooLarge(message, self.max_bytes)


@dataclass(frozen=True)
class RouteLimit:
    """``limit`` instead of the default for requests of ``method`` whose whole path matches the
    regular expression ``path``."""

    method: str
    path: str
    limit: BodyLimit


class BodySizeLimit:
    """ASGI middleware: holds every HTTP request's body to its :class:`BodyLimit`."""

    def __init__(self, app: ASGIApp, default: BodyLimit, routes: Sequence[RouteLimit] = ()) -> None:
        self.app = app
        self.default = default
        self.routes = [(r.method.upper(), re.compile(r.path), r.limit) for r in routes]

    def limit_for(self, method: str, path: str) -> BodyLimit:
        for route_method, pattern, limit in self.routes:
            if method == route_method and pattern.fullmatch(path):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit.max_bytes:
            await too_large_response(limit.error())(scope, receive, send)
            return
        await self.app(scope, _counting(receive, limit), send)


def _counting(receive: Receive, limit: BodyLimit) -> Receive:
    """``receive`` that raises once the body has passed ``limit``."""
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit.max_bytes:
                raise limit.error()
        return message

    return counted
