"""Team usage over a period: the rules (what a period is, who sees which team)."""

from __future__ import annotations

import datetime as dt

from service.db.unit_of_work import UnitOfWork
from service.errors import InvalidInput
from service.usage import repository as repo
from service.usage.schemas import TeamUsageOut, UsageOut

DEFAULT_PERIOD = dt.timedelta(days=30)
MAX_PERIOD = dt.timedelta(days=3660)


class UsageService:
    """Read-only; thread-safe."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def usage(
        self, since: dt.datetime | None, until: dt.datetime | None, *, team_id: int | None
    ) -> UsageOut:
        """Usage per team over ``[since, until)``: ``until`` defaults to now, ``since`` to 30
        days before ``until``; a time without a zone is UTC. Only team ``team_id``'s (every
        team's for None). 422 when ``since`` is not before ``until`` or the period is longer
        than ten years."""
        try:
            start, end = _period(since, until)
        except OverflowError:
            raise InvalidInput("the period is outside the dates this server handles") from None
        with self._uow.read() as conn:
            rows = repo.team_usage(conn, start, end, team_id)
        teams = [
            TeamUsageOut(
                team=r.team,
                gpu_hours=r.gpu_hours,
                trials_started=r.trials_started,
                attempts_started=r.attempts_started,
                studies=r.studies,
            )
            for r in rows
        ]
        return UsageOut(since=start, until=end, teams=teams)


def _period(
    since: dt.datetime | None, until: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    """``[since, until)`` with the defaults filled in; OverflowError near the ends of time."""
    end = _utc(until) if until is not None else dt.datetime.now(dt.UTC)
    start = _utc(since) if since is not None else end - DEFAULT_PERIOD
    if start >= end:
        raise InvalidInput(
            f"'since' ({start.isoformat()}) must be before 'until' ({end.isoformat()})"
        )
    if end - start > MAX_PERIOD:
        raise InvalidInput("the period may be at most ten years long")
    return start, end


def _utc(moment: dt.datetime) -> dt.datetime:
    """In UTC (PostgreSQL takes offsets up to 15:59 only); a time without a zone is UTC."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
