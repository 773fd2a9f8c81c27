"""Errors of artifacts; ``service.api.errors`` maps them to HTTP like every ServiceError."""

from __future__ import annotations

from service.errors import Conflict, InvalidInput, ServiceError


class ArtifactsOff(Conflict):
    """The server has no object storage (HPO_ARTIFACT_URL unset): checkpoints go through
    ``PUT /trials/{id}/checkpoint``. Workers take this answer as the mode."""

    code = "artifacts_off"


class UsePresigned(Conflict):
    """The server keeps checkpoints in object storage: upload through presigned URLs."""

    code = "use_presigned"


class NotUploaded(InvalidInput):
    """Confirmed before the object arrived (or the parts listed are not those uploaded)."""

    code = "not_uploaded"


class SizeMismatch(InvalidInput):
    """The uploaded object is not of the announced size; it was deleted."""

    code = "size_mismatch"


class ObjectStoreUnavailable(ServiceError):
    """The bucket could not be reached, or refused the server's credentials (503)."""

    status_code = 503
    code = "object_store_unavailable"
    retry_after = 5
