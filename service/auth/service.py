"""Tokens: create, list, revoke, and authenticate a request's token.

Authentication costs no SQL on most requests: a recognised token is cached in the process for
``cache_s`` seconds (and never past its expiry). So a token revoked through another server
process stops working there within ``cache_s``; in the process that revoked it, at once.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.engine import URL

from service.auth import repository as repo
from service.auth import tokens
from service.auth.principal import Principal
from service.auth.roles import ROLES, Role
from service.db.unit_of_work import UnitOfWork
from service.errors import InvalidInput, NotFound, Unauthorized

_BAD_TOKEN = "the bearer token is unknown, revoked or expired"


@dataclass(frozen=True)
class IssuedToken:
    """A new token: ``token`` is the secret, shown this once and never stored."""

    info: repo.TokenRow
    token: str


class AuthService:
    def __init__(self, uow: UnitOfWork, cache_s: float = 5.0) -> None:
        self._uow = uow
        self._cache_s = cache_s
        self._cache: dict[str, tuple[Principal, float]] = {}  # hash → (caller, valid until)
        self._lock = threading.Lock()

    def cached(self, token: str) -> Principal | None:
        """The caller behind ``token`` if this process recognised it within ``cache_s`` (no
        SQL, safe on the event loop), else None."""
        digest = tokens.token_hash(token)
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        return None

    def authenticate(self, token: str) -> Principal:
        """The caller behind ``token``; :class:`Unauthorized` if it is not a live token."""
        if not tokens.looks_like_token(token):
            raise Unauthorized(_BAD_TOKEN)
        principal = self.cached(token)
        if principal is not None:
            return principal
        digest = tokens.token_hash(token)
        now = time.monotonic()
        with self._uow.read() as conn:
            owner = repo.live_token(conn, digest)
        if owner is None:
            raise Unauthorized(_BAD_TOKEN)
        principal = Principal(owner.team_id, owner.team, owner.role, owner.token_id)
        valid_until = now + self._cache_s
        if owner.expires_at is not None:
            left = (owner.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
            valid_until = min(valid_until, now + left)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (principal, valid_until)
        return principal

    def issue(
        self,
        team: str,
        role: str,
        *,
        name: str | None = None,
        expires_in: dt.timedelta | None = None,
    ) -> IssuedToken:
        """A new token for ``team`` (created if it does not exist) with ``role``; one
        transaction."""
        _check_team_name(team)
        checked = _role(role)
        secret = tokens.new_token()
        expires_at = None if expires_in is None else dt.datetime.now(dt.UTC) + expires_in

        def work(conn: Connection) -> repo.TokenRow:
            return repo.insert_token(
                conn,
                team_id=repo.ensure_team(conn, team),
                role=checked,
                name=name,
                prefix=tokens.shown_prefix(secret),
                token_hash=tokens.token_hash(secret),
                expires_at=expires_at,
            )

        return IssuedToken(self._uow.transaction(work), secret)

    def list(self, team: str | None) -> list[repo.TokenRow]:
        """Tokens of the team named ``team`` (of every team for None)."""
        with self._uow.read() as conn:
            team_id = None if team is None else repo.find_team(conn, team)
            if team is not None and team_id is None:
                raise NotFound(f"no team named {team!r}")
            return repo.list_tokens(conn, team_id)

    def list_of(self, team_id: int | None) -> Sequence[repo.TokenRow]:
        """Tokens of the team with id ``team_id`` (of every team for None)."""
        with self._uow.read() as conn:
            return repo.list_tokens(conn, team_id)

    def revoke(self, token_id: int, team_id: int | None) -> repo.TokenRow:
        """Revoke a token of the team (of any team for None). Idempotent."""
        row = self._uow.transaction(lambda conn: repo.revoke_token(conn, token_id, team_id))
        if row is None:
            raise NotFound(f"token {token_id} does not exist")
        with self._lock:
            self._cache.clear()
        return row


def _role(value: str) -> Role:
    if value in ROLES:
        return value
    raise InvalidInput(f"unknown role {value!r}; roles are {', '.join(ROLES)}")


def _check_team_name(team: str) -> None:
    if not 1 <= len(team) <= 64 or not all(c.isalnum() or c in "-_." for c in team):
        raise InvalidInput(
            "a team name is 1 to 64 letters, digits, '-', '_' or '.'", {"team": team}
        )


def issue_token(
    url: URL,
    team: str,
    role: str,
    *,
    name: str | None = None,
    expires_in: dt.timedelta | None = None,
) -> str:
    """A new token of ``team`` straight in the database at ``url`` (demo, tests, benches),
    as ``hpo token create`` makes it; returns the secret."""
    from service.db.engine import create_db_engine

    engine = create_db_engine(url, pool_size=1, max_overflow=0)
    try:
        auth = AuthService(UnitOfWork(engine))
        return auth.issue(team, role, name=name, expires_in=expires_in).token
    finally:
        engine.dispose()
