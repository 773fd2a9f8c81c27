"""Reading trials: one trial, a study's trials (filtered, sorted, paged), the best ones."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Connection

from service.db.unit_of_work import UnitOfWork
from service.errors import NotFound
from service.ids import TrialNumber
from service.pagination import DEFAULT_LIMIT, Page, decode_key, encode_cursor
from service.states import TrialStateName
from service.trials import repository as repo
from service.trials.pareto import pareto_front_mask
from service.trials.read_model import to_trial_out
from service.trials.schemas import BestOut, TrialOut

# The key of the last trial of a page: its number, or its first value and number.
_NUMBER_KEY: TypeAdapter[Any] = TypeAdapter(TrialNumber)
_VALUE_KEY: TypeAdapter[Any] = TypeAdapter(tuple[float | None, TrialNumber])


class TrialQueries:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def get(self, trial_id: int) -> TrialOut:
        with self._uow.read() as conn:
            row = repo.get_trial(conn, trial_id)
        if row is None:
            raise NotFound(f"trial {trial_id} does not exist")
        return to_trial_out(row, intermediate=True)

    def list(
        self,
        study_id: int,
        *,
        states: Sequence[TrialStateName] | None,
        sort: str,
        cursor: str | None,
        limit: int = DEFAULT_LIMIT,
        intermediate: bool = False,
    ) -> Page[TrialOut]:
        """A page of the study's trials; the cursor is bound to the sort and the filter."""
        kind = f"trials:{study_id}:{sort}:{','.join(sorted(states or []))}"
        after = decode_key(
            cursor, kind, _NUMBER_KEY if sort.lstrip("-") == "number" else _VALUE_KEY
        )
        with self._uow.read() as conn:
            _require_study(conn, study_id)
            rows = repo.list_trials(
                conn,
                study_id=study_id,
                states=list(states) if states else None,
                sort=sort,
                after=after,
                limit=limit + 1,
            )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more:
            last = rows[-1]
            key: Any = last.number
            if sort.lstrip("-") != "number":
                key = [last.sort_value, last.number]
            next_cursor = encode_cursor(kind, key)
        items = [to_trial_out(r, intermediate=intermediate) for r in rows]
        return Page[TrialOut](items=items, next_cursor=next_cursor)

    def best(self, study_id: int) -> BestOut:
        """The best complete trial, or the Pareto front of a multi-objective study."""
        with self._uow.read() as conn:
            directions = _require_study(conn, study_id)
            if len(directions) == 1:
                best_id = repo.best_trial_id(conn, study_id, directions[0] == "maximize")
                rows = [] if best_id is None else repo.get_trials(conn, [best_id])
                return BestOut(best=to_trial_out(rows[0], intermediate=False) if rows else None)
            trials = repo.complete_values(conn, study_id)
            mask = pareto_front_mask([values for _, values in trials], directions)
            front = [tid for (tid, _), on in zip(trials, mask, strict=True) if on]
            rows = repo.get_trials(conn, front)
        return BestOut(pareto_front=[to_trial_out(r, intermediate=False) for r in rows])


def _require_study(conn: Connection, study_id: int) -> list[str]:
    directions = repo.study_directions(conn, study_id)
    if not directions:
        raise NotFound(f"study {study_id} does not exist")
    return directions
