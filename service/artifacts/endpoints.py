"""HTTP for artifacts in object storage: upload requests and confirmations, lists, download
links, study retention. Without HPO_ARTIFACT_URL every route answers 409 ``artifacts_off``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from service.api.deps import StudyManager, TrialReader, TrialRunner
from service.api.errors import ErrorOut, error_responses
from service.api.params import StudyId, TrialId
from service.artifacts.objects import Part
from service.artifacts.schemas import (
    ArtifactList,
    ArtifactOut,
    CompleteIn,
    DownloadOut,
    RetentionIn,
    RetentionOut,
    UploadIn,
    UploadOut,
)
from service.artifacts.service import ArtifactService, UploadRequest, artifacts_off
from service.checkpoints.endpoints import LeaseToken, OptionalLeaseToken

router = APIRouter(tags=["artifacts"])


async def get_artifacts(request: Request) -> ArtifactService:
    service: ArtifactService | None = request.app.state.artifacts
    if service is None:
        raise artifacts_off()
    return service


ArtifactsDep = Annotated[ArtifactService, Depends(get_artifacts)]
ArtifactId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the artifact's id")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    **error_responses(400),
    404: {"model": ErrorOut, "description": "no such trial or artifact (`not_found`)"},
    409: {
        "model": ErrorOut,
        "description": "the token holds no live lease on the trial (`lease_lost`); the server"
        " has no object storage (`artifacts_off`)",
    },
    503: {
        "model": ErrorOut,
        "description": "the bucket did not answer (`object_store_unavailable`)",
    },
}


@router.post("/trials/{trial_id}/artifacts/uploads", status_code=201, responses=_ERRORS)
def start_upload(
    trial_id: TrialId,
    body: UploadIn,
    _: TrialRunner,  # before ArtifactsDep: a call without a token is a 401 in either mode
    token: LeaseToken,
    artifacts: ArtifactsDep,
) -> UploadOut:
    """Ask to upload an artifact of a running trial (needs its live lease): answers a
    presigned PUT URL, or for a file above HPO_ARTIFACT_PART_BYTES one presigned URL per part.
    Nothing is recorded as stored until the upload is confirmed."""
    request = UploadRequest(body.name, body.step, body.size, body.sha256)
    return UploadOut.of(artifacts.start_upload(trial_id, token, request))


@router.post(
    "/trials/{trial_id}/artifacts/uploads/{upload_id}/complete",
    responses={
        **_ERRORS,
        422: {
            "model": ErrorOut,
            "description": "the object is not there (`not_uploaded`), or not of the announced"
            " size (`size_mismatch`: deleted)",
        },
    },
)
def complete_upload(
    trial_id: TrialId,
    upload_id: ArtifactId,
    body: CompleteIn,
    _: TrialRunner,  # before ArtifactsDep: a call without a token is a 401 in either mode
    token: LeaseToken,
    artifacts: ArtifactsDep,
) -> ArtifactOut:
    """Confirm an upload under the same lease. Stored only if the object is there, of the
    announced size, and the lease still holds; a lost lease deletes the object (409)."""
    parts = None if body.parts is None else [Part(p.part_number, p.etag) for p in body.parts]
    return ArtifactOut.of(artifacts.complete_upload(trial_id, token, upload_id, parts))


@router.get("/trials/{trial_id}/artifacts", responses={404: _ERRORS[404], 409: _ERRORS[409]})
def list_artifacts(trial_id: TrialId, _: TrialReader, artifacts: ArtifactsDep) -> ArtifactList:
    """The trial's stored artifacts (checkpoints kept: the best and the last), oldest first."""
    return ArtifactList(items=[ArtifactOut.of(r) for r in artifacts.list_stored(trial_id)])


@router.get("/trials/{trial_id}/artifacts/{artifact_id}/url", responses=_ERRORS)
def artifact_url(
    trial_id: TrialId,
    artifact_id: ArtifactId,
    _: TrialReader,
    artifacts: ArtifactsDep,
    token: OptionalLeaseToken = None,
) -> DownloadOut:
    """A presigned GET URL of a stored artifact. While the trial runs or waits only the holder
    of its live lease may have one; a finished trial's artifacts are open to its readers."""
    return DownloadOut.of(artifacts.download(trial_id, artifact_id, token))


@router.post(
    "/studies/{study_id}/artifacts/retention",
    responses={
        **error_responses(400),
        404: {"model": ErrorOut, "description": "no such study (`not_found`)"},
        409: {
            "model": ErrorOut,
            "description": "the study still has running or waiting trials (`invalid_state`);"
            " no object storage (`artifacts_off`)",
        },
    },
)
def apply_retention(
    study_id: StudyId, body: RetentionIn, _: StudyManager, artifacts: ArtifactsDep
) -> RetentionOut:
    """Keep the artifacts of the finished study's best `keep_top_k` trials (first objective,
    study direction; HPO_ARTIFACT_KEEP_TOP_K when not given) and delete every other trial's
    objects and rows."""
    return RetentionOut.of(artifacts.apply_retention(study_id, body.keep_top_k))
