"""Who is calling: the team and role behind a request's token."""

from __future__ import annotations

from dataclasses import dataclass

from service.auth.roles import GRANTS, Permission, Role


@dataclass(frozen=True)
class Principal:
    """The caller. ``team_id`` None means every team: the service runs with ``HPO_AUTH=off``
    (then the caller is an admin, and new studies go to the ``default`` team)."""

    team_id: int | None
    team: str
    role: Role
    token_id: int | None = None

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]
