"""Cursor pagination shared by every list: ``{"items": [...], "next_cursor": "..." | null}``.

Cursors are opaque to clients: URL-safe base64 of a small JSON document naming the key of the
last item returned (keyset pagination, so pages stay stable while trials are being added).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from service.errors import BadCursor

T = TypeVar("T")
K = TypeVar("K")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR_LENGTH = 1024


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(kind: str, key: Any) -> str:
    raw = json.dumps({"k": kind, "v": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: str) -> Any:
    """The key stored in ``cursor`` (None when no cursor); BadCursor if it is not ours."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        doc = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadCursor(f"cursor {cursor!r} is not valid") from exc
    if not isinstance(doc, dict) or doc.get("k") != kind or "v" not in doc:
        raise BadCursor(f"cursor {cursor!r} does not belong to this list")
    return doc["v"]


def decode_key(cursor: str | None, kind: str, key: TypeAdapter[K]) -> K | None:
    """:func:`decode_cursor`, and the key must validate as ``key``: a cursor comes from the
    client, and a forged one must not reach a query with a key of the wrong type or range."""
    value = decode_cursor(cursor, kind)
    if value is None:
        return None
    try:
        return key.validate_python(value)
    except ValidationError as exc:
        raise BadCursor(f"cursor {cursor!r} does not belong to this list") from exc
