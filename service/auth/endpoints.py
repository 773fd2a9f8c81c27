"""HTTP for tokens: an admin manages its own team's tokens; anyone may ask who they are."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, status

from service.api.deps import AuthDep, PrincipalDep, SettingsDep, TeamAdmin
from service.api.errors import error_responses
from service.auth.repository import TokenRow
from service.auth.schemas import IssuedTokenOut, TokenCreate, TokenOut, WhoAmIOut
from service.errors import InvalidInput
from service.ids import MAX_ID
from service.pagination import Page

router = APIRouter(tags=["auth"])


def _out(row: TokenRow) -> TokenOut:
    return TokenOut(
        id=row.token_id,
        team=row.team,
        role=row.role,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


@router.get("/whoami")
def whoami(principal: PrincipalDep, settings: SettingsDep) -> WhoAmIOut:
    """The team and role of the calling token."""
    return WhoAmIOut(
        team=principal.team,
        role=principal.role,
        token_id=principal.token_id,
        auth=settings.auth != "off",
    )


@router.post("/tokens", status_code=status.HTTP_201_CREATED, responses=error_responses(400))
def create_token(body: TokenCreate, admin: TeamAdmin, auth: AuthDep) -> IssuedTokenOut:
    """A new token of the caller's team (admin role). The secret is in this response only."""
    if admin.team_id is None:
        raise InvalidInput("the server runs with HPO_AUTH=off: there are no tokens to create")
    expires = None if body.expires_in_days is None else dt.timedelta(days=body.expires_in_days)
    issued = auth.issue(admin.team, body.role, name=body.name, expires_in=expires)
    return IssuedTokenOut(**_out(issued.info).model_dump(), token=issued.token)


@router.get("/tokens")
def list_tokens(admin: TeamAdmin, auth: AuthDep) -> Page[TokenOut]:
    """The caller's team's tokens, revoked ones included (admin role). One page: a team has
    few tokens."""
    return Page(items=[_out(row) for row in auth.list_of(admin.team_id)], next_cursor=None)


@router.delete(
    "/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404)
)
def revoke_token(
    token_id: Annotated[int, Path(ge=1, le=MAX_ID)], admin: TeamAdmin, auth: AuthDep
) -> None:
    """Revoke a token of the caller's team (admin role); revoking twice is fine."""
    auth.revoke(token_id, admin.team_id)
