"""Path and query parameters shared by the routers: ids, cursors."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from service.ids import MAX_ID
from service.pagination import MAX_CURSOR_LENGTH

StudyId = Annotated[int, Path(ge=1, le=MAX_ID, description="the study's id")]
TrialId = Annotated[int, Path(ge=1, le=MAX_ID, description="the trial's id")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_LENGTH,
        description="'next_cursor' of the previous page; the first page without it",
    ),
]
