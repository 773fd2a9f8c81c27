"""Dependencies: the services built in the lifespan, auth, and the Idempotency-Key header."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from service.errors import InvalidInput, Unauthorized
from service.idempotency import IdempotencyKey
from service.notify import WorkSignal
from service.settings import ServerSettings
from service.studies.service import StudyService
from service.trials.handout import HandoutService
from service.trials.leases import LeaseService
from service.trials.queries import TrialQueries


def get_settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


def get_studies(request: Request) -> StudyService:
    service: StudyService = request.app.state.studies
    return service


def get_handout(request: Request) -> HandoutService:
    service: HandoutService = request.app.state.handout
    return service


def get_leases(request: Request) -> LeaseService:
    service: LeaseService = request.app.state.leases
    return service


def get_trial_queries(request: Request) -> TrialQueries:
    service: TrialQueries = request.app.state.trial_queries
    return service


def get_work_signal(request: Request) -> WorkSignal:
    signal: WorkSignal = request.app.state.work_signal
    return signal


SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
StudiesDep = Annotated[StudyService, Depends(get_studies)]
HandoutDep = Annotated[HandoutService, Depends(get_handout)]
LeasesDep = Annotated[LeaseService, Depends(get_leases)]
TrialQueriesDep = Annotated[TrialQueries, Depends(get_trial_queries)]
WorkSignalDep = Annotated[WorkSignal, Depends(get_work_signal)]


def require_token(
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """When ``HPO_API_TOKEN`` is set, every /api request carries ``Authorization: Bearer …``."""
    expected = settings.api_token
    if expected is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        token.encode(), expected.get_secret_value().encode()
    ):
        raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")


IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="retrying a POST with the same key returns the first response",
    ),
]


def idempotency_key(request: Request, key: str | None, body: Any) -> IdempotencyKey | None:
    if key is None:
        return None
    if not 1 <= len(key) <= 255:
        raise InvalidInput("Idempotency-Key must be 1 to 255 characters")
    scope = f"{request.method} {request.url.path}"
    return IdempotencyKey.of(scope, key, body)
