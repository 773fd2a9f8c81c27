"""``hpo token``: create, list and revoke API tokens, straight in the database.

These commands talk to PostgreSQL (``HPO_DATABASE_URL`` or the embedded one), not to the API:
they are how the first token of a team comes to exist.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from service.auth.roles import ROLES
from service.auth.service import AuthService
from service.cli.options import command, group
from service.cli.output import print_json
from service.errors import ServiceError
from service.settings import ServerSettings


def add_commands(commands: Any) -> None:
    _, sub = group(commands, "token", "create, list and revoke API tokens")
    create = command(
        sub,
        "create",
        "create a token (prints only the token, so scripts can capture it)",
        description="Create a token of TEAM (the team is created if it does not exist). Only "
        "the token goes to standard output; it is shown this once and stored only as a hash.",
    )
    create.add_argument("--team", required=True, help="team name")
    create.add_argument("--role", required=True, choices=ROLES, help="what the token may do")
    create.add_argument("--name", help="a label, e.g. what the token is for")
    create.add_argument("--expires-in-days", type=float, help="expire after this many days")
    create.set_defaults(handler=_create)
    listing = command(sub, "list", "list tokens (never the tokens themselves)", json=True)
    listing.add_argument("--team", help="only this team's tokens")
    listing.set_defaults(handler=_list)
    revoke = command(sub, "revoke", "revoke a token by id")
    revoke.add_argument("token_id", type=int, help="the id shown by 'hpo token list'")
    revoke.set_defaults(handler=_revoke)


@contextmanager
def _service() -> Iterator[AuthService]:
    from service.db.engine import create_db_engine, resolve_url
    from service.db.migrate import ensure_current
    from service.db.unit_of_work import UnitOfWork

    engine = create_db_engine(resolve_url(ServerSettings()), pool_size=1, max_overflow=0)
    try:
        ensure_current(engine)
        yield AuthService(UnitOfWork(engine))
    finally:
        engine.dispose()


def _run(call: Callable[[AuthService], int]) -> int:
    try:
        with _service() as auth:
            return call(auth)
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


def _create(args: argparse.Namespace) -> int:
    days = args.expires_in_days
    if days is not None and days <= 0:
        print("error: --expires-in-days must be positive", file=sys.stderr)
        return 2

    def call(auth: AuthService) -> int:
        expires = None if days is None else dt.timedelta(days=days)
        issued = auth.issue(args.team, args.role, name=args.name, expires_in=expires)
        print(issued.token)
        info = issued.info
        print(f"token {info.token_id} ({info.role}) of team {info.team!r}", file=sys.stderr)
        return 0

    return _run(call)


def _list(args: argparse.Namespace) -> int:
    def call(auth: AuthService) -> int:
        if args.json:
            print_json([dataclasses.asdict(t) for t in auth.list(args.team)])
            return 0
        print(
            f"{'ID':>5}  {'TEAM':<16} {'ROLE':<7} {'PREFIX':<13} {'STATUS':<8} {'EXPIRES':<20} NAME"
        )
        now = dt.datetime.now(dt.UTC)
        for t in auth.list(args.team):
            status = "revoked" if t.revoked_at else "active"
            if t.expires_at is not None and t.expires_at <= now and not t.revoked_at:
                status = "expired"
            expires = t.expires_at.strftime("%Y-%m-%d %H:%M") if t.expires_at else "never"
            print(
                f"{t.token_id:>5}  {t.team:<16} {t.role:<7} {t.prefix:<13} {status:<8}"
                f" {expires:<20} {t.name or ''}"
            )
        return 0

    return _run(call)


def _revoke(args: argparse.Namespace) -> int:
    def call(auth: AuthService) -> int:
        row = auth.revoke(args.token_id, None)
        print(f"revoked token {row.token_id} of team {row.team!r}")
        return 0

    return _run(call)
