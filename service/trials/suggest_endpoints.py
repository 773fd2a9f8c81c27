"""HTTP for define-by-run: ``POST /trials/{trial_id}/suggest``."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import SuggestionsDep, TrialRunner
from service.api.errors import error_responses
from service.api.params import TrialId
from service.trials.suggest_schemas import SuggestIn, SuggestOut

router = APIRouter(tags=["trials"])


@router.post("/trials/{trial_id}/suggest", responses=error_responses(400, 404, 409))
def suggest(
    trial_id: TrialId, body: SuggestIn, suggestions: SuggestionsDep, _: TrialRunner
) -> SuggestOut:
    """The value of a parameter the study does not declare, sampled by the study's sampler for
    this trial under its lease (define-by-run). Repeating it answers the same value."""
    value = suggestions.suggest(trial_id, body.lease_token, body.name, body.distribution)
    return SuggestOut(name=body.name, value=value)
