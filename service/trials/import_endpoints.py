"""HTTP for warm starts: finished trials imported into a study."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from service.api.deps import IdempotencyHeader, ImportsDep, StudyManager, idempotency_key
from service.api.errors import error_responses
from service.api.params import StudyId
from service.trials.import_schemas import ImportIn, ImportOut

router = APIRouter(tags=["trials"])


@router.post(
    "/studies/{study_id}/trials/import",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 404, 409),
)
def import_trials(
    study_id: StudyId,
    body: ImportIn,
    imports: ImportsDep,
    caller: StudyManager,
    request: Request,
    dry_run: bool = False,
    key: IdempotencyHeader = None,
) -> ImportOut:
    """Import up to 10 000 finished trials (complete, pruned or failed), checked against the
    study's space first: the first one that does not fit is refused (422 naming its index) and
    nothing is stored. They get new consecutive numbers, count neither against ``max_trials``
    nor ``max_parallel``, and the next suggestion already uses them.

    ``dry_run=true`` checks the trials and stores nothing. With an ``Idempotency-Key``, a retry
    gets the first answer instead of importing the trials twice."""
    idem = None if dry_run else idempotency_key(request, caller, key, body.model_dump(mode="json"))
    return imports.import_trials(study_id, body, idem, dry_run=dry_run)
