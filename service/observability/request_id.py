"""The id of the HTTP request being handled, for log lines and the ``X-Request-ID`` header.

It lives in a context variable: set by the request middleware for the whole request, it is seen
by the endpoint, by the thread pool that runs synchronous endpoints (Starlette copies the
context into it) and by uvicorn's access log line. Background threads (the reaper, the LISTEN
thread) have none.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from contextvars import ContextVar

HEADER = "X-Request-ID"
HEADER_KEY = HEADER.lower().encode("latin-1")
# Short and printable: visible ASCII only (no spaces or control characters), at most 128.
_VALID = re.compile(rb"[\x21-\x7e]{1,128}")

REQUEST_ID: ContextVar[str | None] = ContextVar("hpo_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request this code runs for, or None outside a request."""
    return REQUEST_ID.get()


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-ID`` when it is short and printable, else a new random id."""
    for name, value in headers:
        if name == HEADER_KEY and _VALID.fullmatch(value):
            return value.decode("ascii")
    return uuid.uuid4().hex
