"""Ids and numbers are PostgreSQL ``integer`` columns: studies, trials, tokens, trial numbers.

A value outside their range can name nothing, and PostgreSQL refuses to compare it with some of
them (``integer out of range``): the API refuses such values with 422 before any query runs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

MAX_ID = 2**31 - 1

ResourceId = Annotated[int, Field(ge=1, le=MAX_ID)]
"""The id of a study, trial or token."""
TrialNumber = Annotated[int, Field(ge=0, le=MAX_ID)]
"""A trial's number within its study."""
