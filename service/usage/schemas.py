"""Bodies of ``GET /teams/usage`` (field names are a public contract)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class TeamUsageOut(BaseModel):
    """One team's use of the service in the period."""

    team: str
    gpu_hours: float = Field(
        description="GPUs x wall time of the team's attempts inside the period (an attempt that"
        " overlaps an end is cut there; running ones count up to now)"
    )
    trials_started: int = Field(
        description="trials with an attempt started in the period (a retry or promotion of the"
        " same trial counts once)"
    )
    attempts_started: int = Field(description="leases handed out in the period")
    studies: int = Field(description="studies with an attempt running at some time in the period")


class UsageOut(BaseModel):
    """Usage per team over ``[since, until)``."""

    since: dt.datetime
    until: dt.datetime
    teams: list[TeamUsageOut]
