"""Listing workers: recently seen (asked or claimed), or holding a live lease."""

from __future__ import annotations

import datetime as dt

from pydantic import TypeAdapter
from sqlalchemy import Engine

from service.fleet import repository as repo
from service.fleet.schemas import HeldTrial, WorkerOut
from service.pagination import Page, decode_key, encode_cursor
from service.trials.schemas import WorkerId

_WORKER_KEY: TypeAdapter[str] = TypeAdapter(WorkerId)


class FleetService:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def list(
        self, *, seen_within_s: int, cursor: str | None, limit: int, team_id: int | None
    ) -> Page[WorkerOut]:
        """The team's workers (every team's for None)."""
        after = decode_key(cursor, f"workers:{seen_within_s}", _WORKER_KEY)
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seen_within_s)
        with self._engine.connect() as conn:
            rows = repo.list_workers(
                conn, team_id=team_id, since=since, after=after, limit=limit + 1
            )
        more = len(rows) > limit
        rows = rows[:limit]
        items = [
            WorkerOut(
                worker_id=r["worker_id"],
                tasks=r["tasks"],
                first_seen_at=r["first_seen_at"],
                last_seen_at=r["last_seen_at"],
                trials=[HeldTrial.model_validate(t) for t in r["trials"]],
            )
            for r in rows
        ]
        next_cursor = (
            encode_cursor(f"workers:{seen_within_s}", rows[-1]["worker_id"]) if more else None
        )
        return Page[WorkerOut](items=items, next_cursor=next_cursor)
