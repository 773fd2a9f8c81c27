"""Request and response bodies for tokens."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from service.auth.roles import Role


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    name: (
        Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")] | None
    ) = None
    expires_in_days: Annotated[float, Field(gt=0, le=3650)] | None = None


class TokenOut(BaseModel):
    id: int
    team: str
    role: Role
    name: str | None
    prefix: str = Field(description="the token's first characters, to tell tokens apart")
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


class IssuedTokenOut(TokenOut):
    token: str = Field(description="the secret: shown this once, stored only as a hash")


class WhoAmIOut(BaseModel):
    team: str
    role: Role
    token_id: int | None = Field(description="null when the server runs with HPO_AUTH=off")
    auth: bool = Field(description="false when the server runs with HPO_AUTH=off")
