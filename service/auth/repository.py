"""SQL for teams and tokens (``hpo_teams``, ``hpo_api_tokens``) and study ownership.

Functions run on the caller's connection and never commit."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, text

from service.auth.roles import Role
from service.db.prepared import Statement

DEFAULT_TEAM = "default"  # the team of studies created with HPO_AUTH=off (migration 0009)


@dataclass(frozen=True)
class TokenRow:
    """A token as its team's admin sees it (never its secret nor its hash)."""

    token_id: int
    team: str
    role: Role
    name: str | None
    prefix: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


@dataclass(frozen=True)
class TokenOwner:
    """Who a live token speaks for."""

    token_id: int
    team_id: int
    team: str
    role: Role
    expires_at: dt.datetime | None


def ensure_team(conn: Connection, name: str) -> int:
    """The id of team ``name``, created when it does not exist yet."""
    row = conn.execute(
        text(
            "INSERT INTO hpo_teams (name) VALUES (:name)"
            " ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING team_id"
        ),
        {"name": name},
    ).one()
    return int(row.team_id)


def find_team(conn: Connection, name: str) -> int | None:
    row = conn.execute(
        text("SELECT team_id FROM hpo_teams WHERE name = :name"), {"name": name}
    ).one_or_none()
    return None if row is None else int(row.team_id)


_TOKEN_COLUMNS = """
    k.token_id, t.name AS team, k.role, k.name, k.prefix, k.created_at, k.expires_at,
    k.revoked_at
"""


def insert_token(
    conn: Connection,
    *,
    team_id: int,
    role: Role,
    name: str | None,
    prefix: str,
    token_hash: str,
    expires_at: dt.datetime | None,
) -> TokenRow:
    row = conn.execute(
        text(
            f"""
            WITH k AS (
                INSERT INTO hpo_api_tokens (team_id, role, name, prefix, token_hash, expires_at)
                VALUES (:team_id, :role, :name, :prefix, :hash, :expires_at)
                RETURNING *
            )
            SELECT {_TOKEN_COLUMNS} FROM k JOIN hpo_teams t ON t.team_id = k.team_id
            """
        ),
        {
            "team_id": team_id,
            "role": role,
            "name": name,
            "prefix": prefix,
            "hash": token_hash,
            "expires_at": expires_at,
        },
    ).one()
    return TokenRow(**row._mapping)


_OWNER = Statement(
    """
    SELECT k.token_id, k.team_id, t.name AS team, k.role, k.expires_at
      FROM hpo_api_tokens k JOIN hpo_teams t ON t.team_id = k.team_id
     WHERE k.token_hash = :hash AND k.revoked_at IS NULL
       AND (k.expires_at IS NULL OR k.expires_at > now())
    """
)


def live_token(conn: Connection, token_hash: str) -> TokenOwner | None:
    """The owner of a token that is neither revoked nor expired, else None."""
    row = _OWNER.one_or_none(conn, {"hash": token_hash})
    return None if row is None else TokenOwner(**row)


def list_tokens(conn: Connection, team_id: int | None) -> list[TokenRow]:
    """Tokens of a team (every team's for None), oldest first, revoked ones included."""
    rows = conn.execute(
        text(
            f"""
            SELECT {_TOKEN_COLUMNS}
              FROM hpo_api_tokens k JOIN hpo_teams t ON t.team_id = k.team_id
             WHERE CAST(:team_id AS int) IS NULL OR k.team_id = :team_id
             ORDER BY k.token_id
            """
        ),
        {"team_id": team_id},
    )
    return [TokenRow(**r._mapping) for r in rows]


def revoke_token(conn: Connection, token_id: int, team_id: int | None) -> TokenRow | None:
    """Revoke a token of the team (any team's for None); None if there is no such token.
    Revoking a revoked token keeps its first revocation time."""
    row = conn.execute(
        text(
            f"""
            WITH k AS (
                UPDATE hpo_api_tokens SET revoked_at = coalesce(revoked_at, now())
                 WHERE token_id = :token_id
                   AND (CAST(:team_id AS int) IS NULL OR team_id = :team_id)
                RETURNING *
            )
            SELECT {_TOKEN_COLUMNS} FROM k JOIN hpo_teams t ON t.team_id = k.team_id
            """
        ),
        {"token_id": token_id, "team_id": team_id},
    ).one_or_none()
    return None if row is None else TokenRow(**row._mapping)


_STUDY_TEAM = Statement("SELECT team_id FROM hpo_studies WHERE study_id = :study_id")


def team_of_study(conn: Connection, study_id: int) -> int | None:
    """The id of the study's team; None if there is no such study."""
    row = _STUDY_TEAM.one_or_none(conn, {"study_id": study_id})
    return None if row is None else int(row["team_id"])
