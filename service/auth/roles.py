"""Roles and the permissions each grants.

========  ==========================================================================
role      may
========  ==========================================================================
read      read the team's studies, trials, history, live events and workers
worker    read, and run trials: ask, claim, heartbeat, report, complete, release,
          trial attributes, checkpoints
submit    read, run trials, and create and manage studies (create, pause, delete, enqueue)
admin     all of the above, and manage the team's tokens
========  ==========================================================================
"""

from __future__ import annotations

from typing import Literal, get_args

Role = Literal["read", "worker", "submit", "admin"]
Permission = Literal["read", "run", "manage", "admin"]

ROLES: tuple[Role, ...] = get_args(Role)

GRANTS: dict[Role, frozenset[Permission]] = {
    "read": frozenset({"read"}),
    "worker": frozenset({"read", "run"}),
    "submit": frozenset({"read", "run", "manage"}),
    "admin": frozenset({"read", "run", "manage", "admin"}),
}
