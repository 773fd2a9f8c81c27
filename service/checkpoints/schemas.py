"""Response bodies of the checkpoint endpoints (field names are a public contract)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from service.checkpoints.store import CheckpointMeta


class CheckpointOut(BaseModel):
    """The metadata of a trial's checkpoint."""

    trial_id: int
    step: int = Field(description="the step (epoch) the checkpoint was taken after")
    size: int = Field(description="bytes")
    sha256: str = Field(description="hex digest of the bytes; also the download's ETag")
    updated_at: dt.datetime

    @classmethod
    def of(cls, meta: CheckpointMeta) -> CheckpointOut:
        return cls(
            trial_id=meta.trial_id,
            step=meta.step,
            size=meta.size,
            sha256=meta.sha256,
            updated_at=meta.updated_at,
        )
