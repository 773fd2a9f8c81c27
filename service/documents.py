"""Free-form JSON that clients store: study metadata and task, trials' user attributes.

Such a document is kept as the client sent it and shown back on every read, so it must be JSON
that PostgreSQL and every client can hold. :func:`check_document` refuses (with a message that
names where in the document the problem is)

* nesting deeper than :data:`MAX_DEPTH` levels,
* strings, keys included, that hold a NUL character (PostgreSQL text cannot) or a lone UTF-16
  surrogate (not Unicode: it cannot be written as UTF-8),
* numbers that are not finite (``NaN`` and ``Infinity`` are not JSON),
* a document larger than its limit once serialized (compact JSON, UTF-8 bytes).

:func:`json_document` wraps the check as a pydantic validator; :data:`AttrKey` is the type of
the keys Optuna stores as attribute names (at most :data:`MAX_KEY_LENGTH` characters, its
column's width). All functions are pure.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints
from pydantic_core import PydanticCustomError

MAX_DEPTH = 32
"""Levels of nested objects and arrays a document may have (the document itself is level 1)."""
MAX_KEY_LENGTH = 512
"""Characters of a metadata or user attribute key: Optuna's ``key`` columns are VARCHAR(512)."""

Path = list[str | int]


def _check_text(text: str, path: Path) -> None:
    if "\x00" in text:
        raise _problem(path, "strings must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _problem(path, "strings must be valid Unicode (a lone surrogate is not)") from None


def _check_key(key: str) -> str:
    if "\x00" in key:
        raise PydanticCustomError("json_document", "keys must not contain NUL characters")
    return key


AttrKey = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_KEY_LENGTH), AfterValidator(_check_key)
]
"""A metadata or user attribute key: 1 to 512 characters, no NUL."""


def check_document(value: Any, max_bytes: int) -> None:
    """Refuse ``value`` (decoded JSON) unless it can be stored and shown back as it is.

    Raises :class:`pydantic_core.PydanticCustomError` (type ``json_document``) naming the
    first problem found.
    """
    _walk(value, [], 1)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > max_bytes:
        raise PydanticCustomError(
            "json_document",
            "is {size} bytes as JSON; at most {max_bytes} are allowed",
            {"size": size, "max_bytes": max_bytes},
        )


def json_document(max_bytes: int) -> AfterValidator:
    """A pydantic validator running :func:`check_document` with ``max_bytes``."""

    def check(value: Any) -> Any:
        check_document(value, max_bytes)
        return value

    return AfterValidator(check)


def _walk(value: Any, path: Path, depth: int) -> None:
    if isinstance(value, dict | list) and depth > MAX_DEPTH:
        raise _problem(path, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, [*path, key])
            _walk(item, [*path, key], depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, [*path, index], depth + 1)
    elif isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, float) and not math.isfinite(value):
        raise _problem(path, "numbers must be finite")


def _problem(path: Path, message: str) -> PydanticCustomError:
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part!r}" for part in path)
    text = f"at {where.lstrip('.')}: {message}" if path else message
    return PydanticCustomError("json_document", "{text}", {"text": text})
