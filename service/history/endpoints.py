"""HTTP for the read models: overview, history, change feed, curves, importances, exports."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from service.api.deps import StudyReader, TeamReader
from service.api.errors import error_responses
from service.api.params import Cursor, StudyId
from service.history.export import csv_chunks, jsonl_chunks
from service.history.schemas import (
    ChangesOut,
    CurveOut,
    HistoryPointOut,
    ImportanceOut,
    StudySummaryOut,
)
from service.history.service import HistoryService
from service.pagination import DEFAULT_LIMIT, MAX_CURSOR_LENGTH, MAX_LIMIT, Page

router = APIRouter(tags=["history"])


async def get_history(request: Request) -> HistoryService:
    service: HistoryService = request.app.state.history
    return service


HistoryDep = Annotated[HistoryService, Depends(get_history)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
TrialNumbers = Annotated[
    str | None,
    Query(
        pattern=r"^\d{1,9}(,\d{1,9})*$",
        max_length=10_000,
        description="comma-separated trial numbers; all trials when absent",
    ),
]


@router.get("/studies/summary", responses=error_responses(400))
def studies_summary(
    history: HistoryDep,
    caller: TeamReader,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[StudySummaryOut]:
    """Every study of the caller's team with trial counts, best value (or Pareto front size),
    last activity and the workers running its trials, in study id order."""
    return history.summary(cursor, limit, team_id=caller.team_id)


@router.get("/studies/{study_id}/history", responses=error_responses(400, 404))
def optimization_history(
    study_id: StudyId,
    history: HistoryDep,
    _: StudyReader,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[HistoryPointOut]:
    """Finished trials (complete, pruned, failed) in number order, with each objective's best
    value so far. Pages continue the best values exactly."""
    return history.history(study_id, cursor, limit)


@router.get("/studies/{study_id}/changes", responses=error_responses(400, 404))
def changed_trials(
    study_id: StudyId,
    history: HistoryDep,
    _: StudyReader,
    since: Annotated[
        str | None,
        Query(max_length=MAX_CURSOR_LENGTH, description="the 'cursor' of the previous answer"),
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    include_intermediate: bool = False,
) -> ChangesOut:
    """Trials changed since the cursor ``since`` (without it: every trial).

    Poll with the returned ``cursor`` to get what changed next, and never refetch the whole
    study. A trial can come back more than once (keep the latest by ``id``); none is ever missed,
    even one written by a transaction that commits late. ``more`` says that the rest of a large
    batch is waiting: ask again at once.
    """
    return history.changes(study_id, since, limit, intermediate=include_intermediate)


@router.get("/studies/{study_id}/intermediate", responses=error_responses(400, 404))
def learning_curves(
    study_id: StudyId,
    history: HistoryDep,
    _: StudyReader,
    trials: TrialNumbers = None,
    max_points: Annotated[
        int | None,
        Query(ge=4, le=100_000, description="down-sample each curve to at most this many points"),
    ] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[CurveOut]:
    """Intermediate values (step → value) of the trials that have any, with each trial's state.

    With ``max_points``, a longer curve keeps its first and last point and, in each of
    ``(max_points - 2) // 2`` buckets of consecutive steps, its smallest and largest value: the
    curve's extremes always survive.
    """
    numbers = None if trials is None else sorted({int(n) for n in trials.split(",")})
    return history.curves(study_id, numbers, max_points, cursor, limit)


@router.get("/studies/{study_id}/importance", responses=error_responses(404))
def param_importance(study_id: StudyId, history: HistoryDep, _: StudyReader) -> ImportanceOut:
    """Hyperparameter importances (Optuna's PED-ANOVA) of the complete trials, per objective.

    Large studies are computed in the background: the answer is then the previous result
    (``status: stale``) or nothing yet (``pending``); ask again shortly.
    """
    return history.importance(study_id)


_EXPORT_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/csv": {}}, "description": "one row per trial"},
    **error_responses(404),
}


@router.get(
    "/studies/{study_id}/trials.csv",
    response_class=StreamingResponse,
    responses=_EXPORT_RESPONSES,
)
def export_csv(study_id: StudyId, history: HistoryDep, _: StudyReader) -> StreamingResponse:
    """Every trial, one column per parameter and user attribute, streamed in chunks."""
    export = history.export(study_id, intermediate=False)
    return StreamingResponse(
        csv_chunks(export.columns, export.trials),
        media_type="text/csv; charset=utf-8",
        headers=_attachment(export.study_name, "csv"),
    )


@router.get(
    "/studies/{study_id}/trials.jsonl",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}}, "description": "one trial a line"},
        **error_responses(404),
    },
)
def export_jsonl(
    study_id: StudyId, history: HistoryDep, _: StudyReader, include_intermediate: bool = True
) -> StreamingResponse:
    """Every trial as a JSON object per line (the trial objects of the API), streamed."""
    export = history.export(study_id, intermediate=include_intermediate)
    return StreamingResponse(
        jsonl_chunks(export.trials),
        media_type="application/x-ndjson",
        headers=_attachment(export.study_name, "jsonl"),
    )


def _attachment(study_name: str, extension: str) -> dict[str, str]:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study_name).strip("._") or "study"
    return {"Content-Disposition": f'attachment; filename="{safe}.{extension}"'}
