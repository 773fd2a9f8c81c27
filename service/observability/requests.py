"""The request middleware: a request id for every HTTP request, and its count and duration.

A pure ASGI middleware (not ``BaseHTTPMiddleware``, which runs the endpoint in a second task
and pipes every response through a stream): per request it looks up one header, sets a context
variable, wraps ``send`` to read the status and echo ``X-Request-ID``, and observes two
metrics.

Requests are labelled by route *template* (``/api/v1/trials/{trial_id}/report``), never by
raw path, so the number of series stays bounded: a path that matches no route is ``unmatched``
and an unknown method is ``other``.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Counter, Histogram
from starlette.convertors import PathConvertor
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observability.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS
from service.observability.request_id import HEADER_KEY, REQUEST_ID, request_id_from

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# The counter's and the histogram's child for one (method, route, status).
_Children = tuple[Counter, Histogram]


class RequestObserver:
    """Sets the request id (``service.observability.request_id``) for the whole request, echoes
    it in the response's ``X-Request-ID`` header, and counts and times the request.

    A request that raises (an unhandled error, answered 500 by the server's error handler
    further out) is counted as 500, one cancelled before it answered (the client went away, or
    a shutdown cut a long poll) as 499; its request id is left set so that the error handler's
    log line carries it (each request runs in its own task, so it leaks nowhere).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], _Children] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope["headers"])
        token = REQUEST_ID.set(request_id)
        echo = (HEADER_KEY, request_id.encode("ascii"))
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # A copy: a response object may send the same header list again.
                message = {**message, "headers": [*message.get("headers", ()), echo]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException as exc:
            # Cut off before answering: by the client or a shutdown (499, as nginx counts a
            # client gone), else an error that the server answers with 500.
            cut = isinstance(exc, asyncio.CancelledError)
            self._observe(scope, status or (499 if cut else 500), time.perf_counter() - started)
            raise
        self._observe(scope, status or 500, time.perf_counter() - started)
        REQUEST_ID.reset(token)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in _METHODS else "other"
        route = route_template(scope)
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            labels = (method, route, str(status))
            children = (HTTP_REQUESTS.labels(*labels), HTTP_REQUEST_SECONDS.labels(*labels))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


def route_template(scope: Scope) -> str:
    """The template of the route that answered (``/api/v1/trials/{trial_id}/report``), or
    ``unmatched``.

    FastAPI leaves the matched ``APIRoute`` in ``scope["route"]``; since FastAPI includes routers
    without copying their routes, its path may lack the ``include_router`` prefix, which is then
    the leading segments of the request's path beyond the route's own (the prefixes of this
    app are static). A plain Starlette route without path parameters (``/docs``) is its path.
    """
    route = scope.get("route")
    template: str | None = getattr(route, "path_format", None)
    path: str = scope["path"]
    if template is None:
        matched_static = "endpoint" in scope and not scope.get("path_params")
        return path if matched_static else UNMATCHED
    extra = path.count("/") - template.count("/")
    convertors = getattr(route, "param_convertors", {}).values()
    if extra <= 0 or any(isinstance(c, PathConvertor) for c in convertors):
        return template
    prefix = path.split("/", extra + 1)[:-1]
    return "/".join(prefix) + template
