"""Listing workers: recently seen (asked or claimed), or holding a live lease."""

from __future__ import annotations

import dataclasses
import datetime as dt

from pydantic import TypeAdapter

from service.db.unit_of_work import UnitOfWork
from service.fleet import repository as repo
from service.fleet.schemas import HeldTrial, WorkerOut
from service.pagination import Page, decode_key, encode_cursor
from service.trials.schemas import WorkerId

_WORKER_KEY: TypeAdapter[str] = TypeAdapter(WorkerId)


class FleetService:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def list(
        self, *, seen_within_s: int, cursor: str | None, limit: int, team_id: int | None
    ) -> Page[WorkerOut]:
        """The team's workers (every team's for None)."""
        kind = f"workers:{seen_within_s}"
        after = decode_key(cursor, kind, _WORKER_KEY)
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seen_within_s)
        with self._uow.read() as conn:
            rows = repo.list_workers(
                conn, team_id=team_id, since=since, after=after, limit=limit + 1
            )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(kind, rows[-1].worker_id) if more else None
        return Page[WorkerOut](items=[_worker_out(r) for r in rows], next_cursor=next_cursor)


def _worker_out(row: repo.WorkerRow) -> WorkerOut:
    return WorkerOut(
        worker_id=row.worker_id,
        tasks=row.tasks,
        first_seen_at=row.first_seen_at,
        last_seen_at=row.last_seen_at,
        trials=[HeldTrial(**dataclasses.asdict(lease)) for lease in row.leases],
    )
