"""Response bodies of the workers endpoint."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel


class HeldTrial(BaseModel):
    trial_id: int
    study_id: int
    number: int
    attempt: int
    lease_expires_at: dt.datetime


class WorkerOut(BaseModel):
    worker_id: str
    tasks: list[str] | None
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime
    trials: list[HeldTrial]
