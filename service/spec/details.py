"""The structured ``details`` carried by :class:`~service.errors.SpecError`.

Every refusal in :mod:`service.spec` is reported as a list of :class:`Detail` entries, each
naming *where* in the request the problem is (``loc``, a JSON path such as
``["search_space", "lr", "low"]``) and *what* is wrong (``msg``). The API layer returns them
unchanged, so a client can point at the offending field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from pydantic import ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from service.errors import SpecError

Loc = Sequence[str | int]

RULE_ERROR_TYPE = "spec_rule"


class Detail(TypedDict):
    """One problem: ``loc`` is the JSON path of the offending value, ``msg`` says why."""

    loc: list[str | int]
    msg: str


def detail(loc: Loc, msg: str) -> Detail:
    """Build one :class:`Detail`."""
    return {"loc": list(loc), "msg": msg}


def rule_error(field: str, msg: str) -> PydanticCustomError:
    """A pydantic error for a cross-field rule, attributed to ``field``.

    Raise it from a model validator: pydantic reports it at the model's location, and
    :func:`validation_details` appends ``field`` so the detail points at the field itself.
    """
    return PydanticCustomError(RULE_ERROR_TYPE, "{reason}", {"reason": msg, "field": field})


def validation_details(exc: ValidationError, prefix: Loc = ()) -> list[Detail]:
    """Turn a pydantic :class:`ValidationError` into details located under ``prefix``."""
    return [detail([*prefix, *_error_loc(error)], error["msg"]) for error in exc.errors()]


def _error_loc(error: ErrorDetails) -> list[str | int]:
    loc = list(error["loc"])
    context = error.get("ctx") or {}
    if error["type"] == RULE_ERROR_TYPE and isinstance(context.get("field"), str):
        loc.append(context["field"])
    return loc


def raise_details(details: Sequence[Detail]) -> None:
    """Raise one :class:`SpecError` carrying every detail; do nothing when there is none.

    The message names the first problem (and how many more there are) so that a human
    reading only ``message`` still learns what to fix.
    """
    if details:
        raise spec_error(details)


def spec_error(details: Sequence[Detail]) -> SpecError:
    """A :class:`SpecError` carrying ``details`` (not empty), ready to ``raise``."""
    return SpecError(summarize(details), list(details))


def summarize(details: Sequence[Detail]) -> str:
    """A one-line human summary of ``details`` (which must not be empty)."""
    first = details[0]
    where = ".".join(str(part) for part in first["loc"])
    text = f"{where}: {first['msg']}" if where else first["msg"]
    more = len(details) - 1
    return f"{text} (and {more} more problem{'s' if more > 1 else ''})" if more else text


def fail(loc: Loc, msg: str) -> SpecError:
    """A :class:`SpecError` for a single problem, ready to ``raise``."""
    return spec_error([detail(loc, msg)])
