"""Request and response bodies of the trial import (warm starts; field names are a contract).

``POST /studies/{id}/trials/import`` takes ``{"trials": [...], "source": ...}``. Each trial is
checked one by one, in order (``service.trials.imports``), so that the first bad one is named
by its index; the body itself only says "a list of objects", and :class:`ImportTrialIn` is
the shape each object must have (the OpenAPI schema shows it as the list's items).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from service.ids import TrialNumber
from service.spec import MAX_PARAMS, ParamSpec
from service.studies.schemas import MAX_CONSTRAINTS, MAX_OBJECTIVES, ConstraintName
from service.trials.results import check_result
from service.trials.schemas import MAX_REASON_LENGTH, MAX_STEP, UserAttrs

MAX_IMPORT_TRIALS = 10_000
MAX_SOURCE_LENGTH = 512

ImportState = Literal["complete", "pruned", "failed"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntermediateIn(_In):
    """One reported value: ``null`` stands for a non-finite one (as the exports write it)."""

    step: int = Field(ge=0, le=MAX_STEP)
    value: float | None


class ImportTrialIn(_In):
    """One finished trial to import: ``complete`` with ``values``, ``pruned``, or ``failed``
    (optionally with a ``reason``). ``params`` hold exactly the trial's active parameters."""

    number: TrialNumber | None = Field(
        default=None,
        description="its number where it comes from (kept in the trial's 'hpo:imported_from'"
        " system attribute; unique within a request). The trial gets a new number here.",
    )
    state: ImportState = "complete"
    params: dict[str, Any] = Field(max_length=MAX_PARAMS)
    distributions: dict[str, ParamSpec] = Field(
        default_factory=dict,
        max_length=MAX_PARAMS,
        description="for parameters the study does not declare (define-by-run): each one's"
        " distribution, as a search-space entry without 'when'",
    )
    values: list[float] | None = Field(default=None, min_length=1, max_length=MAX_OBJECTIVES)
    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH, pattern=r"^[^\x00]*$")
    intermediate_values: list[IntermediateIn] = Field(default_factory=list)
    user_attrs: UserAttrs = Field(default_factory=dict)
    constraints: dict[ConstraintName, float] | None = Field(
        default=None,
        max_length=MAX_CONSTRAINTS,
        description="for a complete trial of a study that declares constraints: each one's"
        " value (<= 0 is feasible)",
    )
    datetime_start: dt.datetime | None = Field(
        default=None, description="when it started (default: now); naive times are UTC"
    )
    datetime_complete: dt.datetime | None = Field(
        default=None, description="when it finished (default: now); naive times are UTC"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ImportTrialIn:
        check_result(self.state, self.values, self.reason, self.constraints, verb="import")
        steps = [i.step for i in self.intermediate_values]
        if len(set(steps)) != len(steps):
            raise ValueError("intermediate_values repeat a step")
        start, end = _utc(self.datetime_start), _utc(self.datetime_complete)
        if start is not None and end is not None and end < start:
            raise ValueError("datetime_complete is before datetime_start")
        return self


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    """A time as Optuna's ``timestamp without time zone`` columns keep it (naive UTC)."""
    return _utc(value)


def _item_schema() -> dict[str, Any]:
    """:class:`ImportTrialIn`'s JSON schema with its definitions inlined (it is shown as the
    items of a list, outside the components FastAPI collects)."""
    schema = ImportTrialIn.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return dict(inline(schema))


ImportItem = Annotated[dict[str, Any], WithJsonSchema(_item_schema())]


class ImportIn(_In):
    """Up to 10 000 finished trials, checked in order; the first bad one is refused (422
    naming its index) and nothing is stored."""

    trials: list[ImportItem] = Field(min_length=1, max_length=MAX_IMPORT_TRIALS)
    source: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SOURCE_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="where the trials come from (a file, an Optuna study), kept in each"
        " trial's 'hpo:imported_from' system attribute",
    )


class ImportOut(BaseModel):
    """The imported trials hold consecutive numbers, in the order they were sent."""

    study_id: int
    imported: int = Field(description="how many were imported (with dry_run: would be)")
    first_number: int | None = Field(default=None, description="null with dry_run")
    last_number: int | None = Field(default=None, description="null with dry_run")
    dry_run: bool = False
