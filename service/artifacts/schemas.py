"""Request and response bodies of the artifact endpoints (field names are a public contract)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from service.artifacts.location import NAME_PATTERN
from service.artifacts.repository import ArtifactRow
from service.artifacts.service import Download, Retention, Upload

MAX_OBJECT_BYTES = 5 * 1024**4  # S3's largest object
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="hex digest of the bytes")]


class UploadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=NAME_PATTERN,
        description="'checkpoint' (what a resumed attempt starts from), or any other name:"
        " 'model', 'train.log'... (letters, digits, '.', '_', '-'; at most 64)",
    )
    step: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="the step it follows; checkpoints: needed"
    )
    size: int = Field(ge=0, le=MAX_OBJECT_BYTES, description="bytes")
    sha256: Sha256 | None = Field(default=None, description="checkpoints: needed")


class PartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    part_number: int = Field(ge=1, le=10_000)
    etag: str = Field(min_length=1, max_length=200, description="the part PUT's ETag header")


class CompleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parts: list[PartIn] | None = Field(
        default=None, max_length=10_000, description="multipart uploads: every part's ETag"
    )


class ArtifactOut(BaseModel):
    id: int
    trial_id: int
    study_id: int
    name: str
    step: int | None
    size: int
    sha256: str | None
    state: str = Field(description="pending (not confirmed yet) or stored")
    created_at: dt.datetime
    stored_at: dt.datetime | None

    @classmethod
    def of(cls, row: ArtifactRow) -> ArtifactOut:
        return cls(
            id=row.artifact_id,
            trial_id=row.trial_id,
            study_id=row.study_id,
            name=row.name,
            step=row.step,
            size=row.size,
            sha256=row.sha256,
            state=row.state,
            created_at=row.created_at,
            stored_at=row.stored_at,
        )


class PartUrl(BaseModel):
    part_number: int
    url: str


class UploadOut(BaseModel):
    """PUT the bytes to ``url``; or, for a multipart upload, bytes
    ``[(n-1)*part_size, n*part_size)`` to part n's URL, keeping each answer's ETag. Then
    confirm at ``POST .../uploads/{upload_id}/complete`` before ``expires_at``."""

    upload_id: int = Field(description="the artifact's id")
    artifact: ArtifactOut
    url: str | None = Field(description="one presigned PUT; null for a multipart upload")
    part_size: int | None
    parts: list[PartUrl]
    expires_at: dt.datetime

    @classmethod
    def of(cls, upload: Upload) -> UploadOut:
        return cls(
            upload_id=upload.artifact.artifact_id,
            artifact=ArtifactOut.of(upload.artifact),
            url=upload.url,
            part_size=upload.part_size,
            parts=[PartUrl(part_number=n, url=u) for n, u in enumerate(upload.part_urls, 1)],
            expires_at=upload.expires_at,
        )


class DownloadOut(BaseModel):
    """GET ``url`` (without this API's Authorization header) before ``expires_at``."""

    artifact: ArtifactOut
    url: str
    expires_at: dt.datetime

    @classmethod
    def of(cls, download: Download) -> DownloadOut:
        return cls(
            artifact=ArtifactOut.of(download.artifact),
            url=download.url,
            expires_at=download.expires_at,
        )


class ArtifactList(BaseModel):
    items: list[ArtifactOut]


class RetentionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_top_k: int | None = Field(
        default=None, ge=1, le=1_000_000, description="unset: HPO_ARTIFACT_KEEP_TOP_K"
    )


class RetentionOut(BaseModel):
    kept_trials: list[int] = Field(description="the trials whose artifacts were kept, best first")
    deleted_objects: int

    @classmethod
    def of(cls, retention: Retention) -> RetentionOut:
        return cls(kept_trials=retention.kept_trials, deleted_objects=retention.deleted_objects)
