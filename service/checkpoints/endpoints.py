"""HTTP for checkpoints: upload (raw bytes), download, metadata."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse

from service.api.deps import TrialReader, TrialRunner
from service.api.errors import ErrorOut
from service.api.params import TrialId
from service.artifacts.service import Download
from service.checkpoints.schemas import CheckpointOut
from service.checkpoints.service import CheckpointService

router = APIRouter(prefix="/trials/{trial_id}/checkpoint", tags=["checkpoints"])

OCTET_STREAM = "application/octet-stream"
STEP_HEADER = "X-Checkpoint-Step"


async def get_checkpoints(request: Request) -> CheckpointService:
    service: CheckpointService = request.app.state.checkpoints
    return service


CheckpointsDep = Annotated[CheckpointService, Depends(get_checkpoints)]
LeaseToken = Annotated[
    str, Header(alias="X-Lease-Token", min_length=1, max_length=64, description="the lease token")
]
OptionalLeaseToken = Annotated[
    str | None,
    Header(
        alias="X-Lease-Token",
        min_length=1,
        max_length=64,
        description="the current lease token; not needed once the trial has finished",
    ),
]
Step = Annotated[
    int,
    Header(alias=STEP_HEADER, ge=0, le=2**31 - 1, description="the step the checkpoint follows"),
]

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such trial, or it has no checkpoint (`not_found`)"},
    409: {
        "model": ErrorOut,
        "description": "the token holds no live lease on the trial (`lease_lost`)",
    },
}
_UPLOAD: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "the checkpoint, opaque bytes",
        "content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
    }
}
_DOWNLOAD: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the checkpoint's bytes",
        "content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
        "headers": {
            STEP_HEADER: {"description": "its step", "schema": {"type": "integer"}},
            "ETag": {"description": 'its sha256 in quotes: "<hex>"', "schema": {"type": "string"}},
        },
    },
    303: {
        "description": "with object storage (HPO_ARTIFACT_URL): `Location` is a presigned URL"
        " of the checkpoint's bytes (fetch it without this API's Authorization header);"
        " X-Checkpoint-Step and ETag as for 200",
    },
    **_ERRORS,
}


@router.put(
    "",
    openapi_extra=_UPLOAD,
    responses={
        **_ERRORS,
        413: {"model": ErrorOut, "description": "over HPO_CHECKPOINT_MAX_BYTES"},
    },
)
async def put_checkpoint(
    trial_id: TrialId,
    token: LeaseToken,
    step: Step,
    request: Request,
    checkpoints: CheckpointsDep,
    _: TrialRunner,
) -> CheckpointOut:
    """Replace the trial's checkpoint with the request body (after every epoch, say).

    Needs the trial's live lease; on any error nothing is stored and the trial is unchanged.
    With object storage (HPO_ARTIFACT_URL) this answers 409 `use_presigned` before reading the
    body: upload through `POST /trials/{id}/artifacts/uploads` instead.
    """
    checkpoints.check_accepts_bytes()
    data = await request.body()  # capped at HPO_CHECKPOINT_MAX_BYTES by service.api.limits
    meta = await run_in_threadpool(checkpoints.put, trial_id, token, step, data)
    return CheckpointOut.of(meta)


@router.get("", response_class=Response, responses=_DOWNLOAD)
def get_checkpoint(
    trial_id: TrialId,
    checkpoints: CheckpointsDep,
    _: TrialReader,
    token: OptionalLeaseToken = None,
) -> Response:
    """The trial's last checkpoint. While the trial runs or waits, only the holder of its
    current lease may read it (to resume); a finished trial's checkpoint is open to all.
    With object storage: 303 to a presigned URL of it."""
    checkpoint = checkpoints.get(trial_id, token)
    if isinstance(checkpoint, Download):
        artifact = checkpoint.artifact
        return RedirectResponse(
            checkpoint.url,
            status_code=303,
            headers={STEP_HEADER: str(artifact.step), "ETag": f'"{artifact.sha256}"'},
        )
    headers = {STEP_HEADER: str(checkpoint.meta.step), "ETag": f'"{checkpoint.meta.sha256}"'}
    return Response(checkpoint.data, media_type=OCTET_STREAM, headers=headers)


@router.get("/meta", responses={404: _ERRORS[404]})
def get_checkpoint_meta(
    trial_id: TrialId, checkpoints: CheckpointsDep, _: TrialReader
) -> CheckpointOut:
    """Step, size, sha256 and time of the trial's last checkpoint; no lease needed."""
    return CheckpointOut.of(checkpoints.meta(trial_id))
