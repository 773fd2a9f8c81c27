"""The rules of the read models: cursors, best-so-far, Pareto fronts, down-sampling, exports.

Every method reads in one short connection (exports: one per chunk) and holds nothing between
calls except two per-process caches that complete trials make safe: Pareto front sizes and
importances, each keyed by study and the number of complete trials it was computed on.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection

from service.db.unit_of_work import UnitOfWork
from service.errors import BadCursor, NotFound
from service.history import repository as repo
from service.history.curves import downsample
from service.history.export import CsvColumns
from service.history.importance import ImportanceCache
from service.history.schemas import (
    ChangesOut,
    CurveOut,
    HistoryPointOut,
    ImportanceOut,
    StudySummaryOut,
)
from service.ids import MAX_ID
from service.pagination import Page, decode_cursor, encode_cursor
from service.states import API_STATE, api_state
from service.studies import repository as studies_repo
from service.studies.schemas import TrialCounts
from service.trials.pareto import pareto_front_mask
from service.trials.read_model import to_trial_out, utc
from service.trials.repository import study_directions
from service.trials.schemas import TrialOut

EXPORT_CHUNK = 500
_FRONT_CACHE = 1024


class _HistoryKey(BaseModel):
    n: int
    b: list[float | None] | None = None


class _ChangesKey(BaseModel):
    h: int
    a: tuple[int, int] | None = None


_Key = TypeVar("_Key", _HistoryKey, _ChangesKey)


@dataclass(frozen=True)
class TrialExport:
    """A study's trials to stream: the CSV layout and a lazy iterator over the trials."""

    study_name: str
    columns: CsvColumns
    trials: Iterator[TrialOut]


class HistoryService:
    def __init__(self, uow: UnitOfWork, importance: ImportanceCache) -> None:
        self._uow = uow
        self._importance = importance
        self._fronts: dict[int, tuple[int, int]] = {}  # study → (complete trials, front size)
        self._fronts_lock = threading.Lock()

    def close(self) -> None:
        self._importance.close()

    # ---- studies overview ----

    def summary(
        self, cursor: str | None, limit: int, *, team_id: int | None
    ) -> Page[StudySummaryOut]:
        """A page of the team's studies (every team's for None) with counts, best value or
        Pareto front size, last activity and running workers: three statements whatever the
        page size."""
        after = _int_key(cursor, "summary")
        with self._uow.read() as conn:
            rows = studies_repo.list_studies(
                conn, team_id=team_id, state=None, after_id=after, limit=limit + 1
            )
            page = rows[:limit]
            activity = repo.study_activity(
                conn,
                [r.study_id for r in page],
                [r.study_id for r in page if len(r.directions) == 1],
                [r.study_id for r in page if r.directions == ["maximize"]],
            )
            fronts = self._front_sizes(conn, [r for r in page if len(r.directions) > 1])
        items = [_summary(r, activity[r.study_id], fronts.get(r.study_id)) for r in page]
        more = len(rows) > limit
        next_cursor = encode_cursor("summary", page[-1].study_id) if more else None
        return Page[StudySummaryOut](items=items, next_cursor=next_cursor)

    def _front_sizes(
        self, conn: Connection, studies: Sequence[studies_repo.StudyRow]
    ) -> dict[int, int]:
        sizes: dict[int, int] = {}
        stale = []
        with self._fronts_lock:
            for study in studies:
                cached = self._fronts.get(study.study_id)
                if cached is not None and cached[0] == study.counts["complete"]:
                    sizes[study.study_id] = cached[1]
                else:
                    stale.append(study)
        if not stale:
            return sizes
        values = repo.complete_values(conn, [s.study_id for s in stale])
        for study in stale:
            points = values[study.study_id]
            size = sum(pareto_front_mask(points, study.directions))
            sizes[study.study_id] = size
            with self._fronts_lock:
                if len(self._fronts) >= _FRONT_CACHE:
                    self._fronts.clear()
                self._fronts[study.study_id] = (len(points), size)
        return sizes

    # ---- optimization history ----

    def history(self, study_id: int, cursor: str | None, limit: int) -> Page[HistoryPointOut]:
        """Finished trials in number order with the best value so far of each objective
        (infeasible trials never count). The cursor carries the best values, so every page
        continues them exactly."""
        kind = f"history:{study_id}"
        key = _model_key(cursor, kind, _HistoryKey) or _HistoryKey(n=-1)
        with self._uow.read() as conn:
            directions = _require_study(conn, study_id)
            if key.b is not None and len(key.b) != len(directions):
                raise BadCursor(f"cursor {cursor!r} does not belong to this list")
            rows = repo.finished_trials(conn, study_id, key.n, limit + 1)
        best = key.b
        items = []
        for row in rows[:limit]:
            values = row.values if row.state == "COMPLETE" and row.values else None
            if values is not None and row.feasible:
                best = _improve(best, values, directions)
            items.append(_history_point(row, values, best))
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor(kind, {"n": items[-1].number, "b": best})
        return Page[HistoryPointOut](items=items, next_cursor=next_cursor)

    # ---- change feed ----

    def changes(
        self, study_id: int, since: str | None, limit: int, *, intermediate: bool
    ) -> ChangesOut:
        """Every trial changed since the cursor ``since`` (no cursor: every trial).

        A change is a write stamped with its transaction id. The answer's cursor is the oldest
        transaction still running when this call read (every older one had finished), so the
        next call returns everything committed since, including transactions that were running
        now and commit later; a trial may be returned twice, never missed. When a batch exceeds
        ``limit``, ``more`` is true and the cursor continues the batch in (xid, trial id) order.
        """
        kind = f"changes:{study_id}"
        key = _model_key(since, kind, _ChangesKey)
        if key is None:
            after, first = (0, -1), None
        elif key.a is not None:
            after, first = key.a, key.h
        else:
            after, first = (key.h, -1), None
        with self._uow.read() as conn:
            _require_study(conn, study_id)
            horizon, rows = repo.changed_trials(
                conn, study_id, after, limit + 1, intermediate=intermediate
            )
        floor = horizon if first is None else first
        more = len(rows) > limit
        rows = rows[:limit]
        position: dict[str, Any] = {"h": floor}
        if more:
            position["a"] = [rows[-1].change_xid, rows[-1].trial_id]
        items = [to_trial_out(r, intermediate=intermediate) for r in rows]
        return ChangesOut(items=items, cursor=encode_cursor(kind, position), more=more)

    # ---- learning curves ----

    def curves(
        self,
        study_id: int,
        numbers: Sequence[int] | None,
        max_points: int | None,
        cursor: str | None,
        limit: int,
    ) -> Page[CurveOut]:
        """Intermediate values of the study's trials (those numbered in ``numbers`` only, when
        given) that have any, in number order, each down-sampled to ``max_points``."""
        kind = f"curves:{study_id}"
        after = _int_key(cursor, kind)
        with self._uow.read() as conn:
            _require_study(conn, study_id)
            rows = repo.curves(conn, study_id, numbers, -1 if after is None else after, limit + 1)
        items = [_curve(r, max_points) for r in rows[:limit]]
        more = len(rows) > limit
        next_cursor = encode_cursor(kind, items[-1].number) if more else None
        return Page[CurveOut](items=items, next_cursor=next_cursor)

    # ---- importance ----

    def importance(self, study_id: int) -> ImportanceOut:
        return self._importance.get(study_id)

    # ---- export ----

    def export(self, study_id: int, *, intermediate: bool) -> TrialExport:
        """Check the study and fix the CSV layout now; the trials are read lazily in chunks of
        ``EXPORT_CHUNK`` (one short connection each), so an export never holds the whole study
        in memory nor a connection while the client reads. Each chunk is read at its own time."""
        with self._uow.read() as conn:
            directions = _require_study(conn, study_id)
            shape = repo.export_shape(conn, study_id)
            row = studies_repo.load_definition_row(conn, study_id)
        if shape is None or row is None:
            raise NotFound(f"study {study_id} does not exist")
        columns = CsvColumns.of(
            len(directions), shape.search_space, shape.param_names, shape.user_attr_keys
        )
        return TrialExport(row.name, columns, self._iter_trials(study_id, intermediate))

    def _iter_trials(self, study_id: int, intermediate: bool) -> Iterator[TrialOut]:
        after = -1
        while True:
            with self._uow.read() as conn:
                rows = repo.trials_after(
                    conn, study_id, after, EXPORT_CHUNK, intermediate=intermediate
                )
            for row in rows:
                yield to_trial_out(row, intermediate=intermediate)
            if len(rows) < EXPORT_CHUNK:
                return
            after = rows[-1].number


def _require_study(conn: Connection, study_id: int) -> list[str]:
    directions = study_directions(conn, study_id)
    if not directions:
        raise NotFound(f"study {study_id} does not exist")
    return directions


def _int_key(cursor: str | None, kind: str) -> int | None:
    value = decode_cursor(cursor, kind)
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID
    ):
        raise BadCursor(f"cursor {cursor!r} is not valid")
    return value


def _model_key(cursor: str | None, kind: str, model: type[_Key]) -> _Key | None:
    value = decode_cursor(cursor, kind)
    if value is None:
        return None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise BadCursor(f"cursor {cursor!r} is not valid") from exc


def _improve(
    best: list[float | None] | None, values: Sequence[float], directions: Sequence[str]
) -> list[float | None]:
    """Each objective's best of ``best`` and ``values``."""
    out: list[float | None] = []
    for k, (value, direction) in enumerate(zip(values, directions, strict=True)):
        current = None if best is None else best[k]
        if current is None:
            out.append(value)
        else:
            out.append(max(current, value) if direction == "maximize" else min(current, value))
    return out


def _history_point(
    row: repo.FinishedTrial, values: list[float] | None, best: list[float | None] | None
) -> HistoryPointOut:
    start, end = utc(row.datetime_start), utc(row.datetime_complete)
    return HistoryPointOut(
        number=row.number,
        id=row.trial_id,
        state=API_STATE[row.state],
        values=[_finite(v) for v in values] if values is not None else None,
        best_values=[_finite(v) for v in best] if best is not None else None,
        feasible=row.feasible,
        datetime_start=start,
        datetime_complete=end,
        duration_s=(end - start).total_seconds() if start and end else None,
    )


def _curve(row: repo.TrialCurve, max_points: int | None) -> CurveOut:
    steps, values = row.steps, row.values
    n_points = len(steps)
    if max_points is not None:
        steps, values = downsample(steps, values, max_points)
    return CurveOut(
        number=row.number,
        id=row.trial_id,
        state=api_state(row.state, row.paused_step),
        steps=steps,
        values=[_finite(v) for v in values],
        n_points=n_points,
    )


def _summary(
    row: studies_repo.StudyRow, activity: repo.StudyActivity, front_size: int | None
) -> StudySummaryOut:
    times = [row.updated_at, utc(activity.last_trial_start), utc(activity.last_trial_complete)]
    return StudySummaryOut(
        id=row.study_id,
        name=row.name,
        state=row.state,
        directions=row.directions,
        metric_names=row.metric_names,
        trial_counts=TrialCounts(**row.counts),
        max_trials=row.max_trials,
        max_gpu_hours=row.max_gpu_hours,
        gpu_hours_used=row.gpu_seconds / 3600.0,
        best_value=_finite(activity.best_value) if activity.best_value is not None else None,
        best_trial_number=activity.best_number,
        pareto_front_size=front_size,
        last_activity_at=max(t for t in times if t is not None),
        running_workers=activity.workers,
        created_at=row.created_at,
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
