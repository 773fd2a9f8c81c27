"""Dependencies: the services built in the lifespan, auth, and the Idempotency-Key header.

They are ``async``: FastAPI runs a plain ``def`` dependency in the thread pool, a hop per
dependency on every request. These only read ``app.state`` and in-memory caches; what needs
the database (a token or a study not seen before) goes to the thread pool explicitly.

Every dependency is a node FastAPI solves on every request, so the permission checks
(:class:`Allowed`, :class:`OnStudy`, :class:`OnTrial`) are one node over the bearer scheme: they
resolve the caller and read ``Access`` themselves rather than through a dependency each.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.params import StudyId, TrialId
from service.auth.access import Access
from service.auth.principal import Principal
from service.auth.repository import DEFAULT_TEAM
from service.auth.roles import Permission
from service.auth.service import AuthService
from service.errors import Forbidden, Unauthorized
from service.idempotency import MAX_IDEMPOTENCY_KEY_LENGTH, IdempotencyKey
from service.settings import ServerSettings
from service.studies.service import StudyService
from service.trials.imports import TrialImports
from service.trials.queries import TrialQueries
from service.trials.service import TrialService
from service.trials.suggest import Suggestions


async def get_settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


async def get_studies(request: Request) -> StudyService:
    service: StudyService = request.app.state.studies
    return service


async def get_trials(request: Request) -> TrialService:
    service: TrialService = request.app.state.trials
    return service


async def get_trial_queries(request: Request) -> TrialQueries:
    service: TrialQueries = request.app.state.trial_queries
    return service


async def get_suggestions(request: Request) -> Suggestions:
    service: Suggestions = request.app.state.suggestions
    return service


async def get_imports(request: Request) -> TrialImports:
    service: TrialImports = request.app.state.imports
    return service


SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
StudiesDep = Annotated[StudyService, Depends(get_studies)]
TrialsDep = Annotated[TrialService, Depends(get_trials)]
TrialQueriesDep = Annotated[TrialQueries, Depends(get_trial_queries)]
ImportsDep = Annotated[TrialImports, Depends(get_imports)]
SuggestionsDep = Annotated[Suggestions, Depends(get_suggestions)]


async def get_auth(request: Request) -> AuthService:
    service: AuthService = request.app.state.auth
    return service


AuthDep = Annotated[AuthService, Depends(get_auth)]

# The caller when the server runs with HPO_AUTH=off: an admin of every team.
OPEN_PRINCIPAL = Principal(team_id=None, team=DEFAULT_TEAM, role="admin")


_BEARER = HTTPBearer(
    auto_error=False,
    description="an API token of your team (hpo token create, or POST /api/v1/tokens)",
)


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


async def get_principal(request: Request, credentials: BearerDep) -> Principal:
    """The caller behind ``Authorization: Bearer <token>`` (401 without a live token)."""
    return await _principal(request, credentials)


async def _principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    """A token this process recognised lately is answered on the event loop; only a lookup in
    the database goes to the thread pool."""
    settings: ServerSettings = request.app.state.settings
    if settings.auth == "off":
        return OPEN_PRINCIPAL
    if credentials is None or not credentials.credentials.strip():
        raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")
    auth: AuthService = request.app.state.auth
    token = credentials.credentials.strip()
    principal = auth.cached(token)
    if principal is None:
        principal = await run_in_threadpool(auth.authenticate, token)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _permit(principal: Principal, permission: Permission) -> Principal:
    if not principal.may(permission):
        raise Forbidden(
            f"a {principal.role!r} token may not do this; it needs the {permission!r} permission",
            {"role": principal.role, "needs": permission},
        )
    return principal


class Allowed:
    """The caller, if its role grants ``permission`` (403 otherwise)."""

    def __init__(self, permission: Permission) -> None:
        self.permission: Permission = permission

    async def __call__(self, request: Request, credentials: BearerDep) -> Principal:
        return _permit(await _principal(request, credentials), self.permission)


class OnStudy:
    """The caller, if it may ``permission`` on the study in the path (another team's: 404)."""

    def __init__(self, permission: Permission) -> None:
        self.permission: Permission = permission

    async def __call__(
        self, study_id: StudyId, request: Request, credentials: BearerDep
    ) -> Principal:
        principal = await _principal(request, credentials)
        access: Access = request.app.state.access
        if not access.decided_study(principal, study_id):  # only the database can tell
            await run_in_threadpool(access.check_study, principal, study_id)
        return _permit(principal, self.permission)


class OnTrial:
    """The caller, if it may ``permission`` on the trial in the path (another team's: 404)."""

    def __init__(self, permission: Permission) -> None:
        self.permission: Permission = permission

    async def __call__(
        self, trial_id: TrialId, request: Request, credentials: BearerDep
    ) -> Principal:
        principal = await _principal(request, credentials)
        access: Access = request.app.state.access
        if not access.decided_trial(principal, trial_id):
            await run_in_threadpool(access.check_trial, principal, trial_id)
        return _permit(principal, self.permission)


TeamReader = Annotated[Principal, Depends(Allowed("read"))]
TeamRunner = Annotated[Principal, Depends(Allowed("run"))]
TeamManager = Annotated[Principal, Depends(Allowed("manage"))]
TeamAdmin = Annotated[Principal, Depends(Allowed("admin"))]
StudyReader = Annotated[Principal, Depends(OnStudy("read"))]
StudyRunner = Annotated[Principal, Depends(OnStudy("run"))]
StudyManager = Annotated[Principal, Depends(OnStudy("manage"))]
TrialReader = Annotated[Principal, Depends(OnTrial("read"))]
TrialRunner = Annotated[Principal, Depends(OnTrial("run"))]


IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
        description="retrying a POST with the same key returns the first response",
    ),
]


def idempotency_key(
    request: Request, principal: Principal, key: str | None, body: Any
) -> IdempotencyKey | None:
    """The request's key, scoped by team and endpoint: teams never see each other's replies."""
    if key is None:
        return None  # its length is checked with the header (IdempotencyHeader)
    scope = f"team:{principal.team_id or 0} {request.method} {request.url.path}"
    return IdempotencyKey.of(scope, key, body)
