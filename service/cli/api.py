"""Commands that talk to the HTTP API: which API, which token, and their errors in words.

The API's answers become :class:`~service.cli.errors.CliError`: a missing or refused token
names ``HPO_API_TOKEN``, ``--token`` and ``hpo token create``; a role that may not do the call
says which role may; a refused body lists what is wrong with it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from service.cli.errors import CliError
from service.cli.options import DEFAULT_API
from workers.client import ApiError, HPOClient, Unavailable

_MAKE_TOKEN = "`hpo token create --team TEAM --role {role}` makes one"
_NEEDS = {"read": "read", "run": "worker", "manage": "submit", "admin": "admin"}


@contextmanager
def api_client(args: argparse.Namespace) -> Iterator[HPOClient]:
    """A client of ``--api`` (``HPO_API_URL``) with ``--token`` (``HPO_API_TOKEN``)."""
    url = args.api or os.environ.get("HPO_API_URL") or DEFAULT_API
    token = args.token or os.environ.get("HPO_API_TOKEN") or None
    with HPOClient(url, token=token, retry_for_s=5.0) as client:
        try:
            yield client
        except ApiError as exc:
            raise _refusal(exc, url, token is not None) from exc
        except Unavailable as exc:
            raise CliError(
                f"cannot reach the API at {url} ({_reason(exc)})",
                "start it with `hpo serve`, or point --api (HPO_API_URL) at it",
            ) from exc


def study_id(client: HPOClient, study: str) -> int:
    """The id of a study given by name or id."""
    return int(client.get_study(study)["id"])


def _refusal(exc: ApiError, url: str, has_token: bool) -> CliError:
    if exc.status == 401 and not has_token:
        return CliError(
            f"the API at {url} needs a token",
            "set HPO_API_TOKEN or pass --token; " + _MAKE_TOKEN.format(role="submit"),
        )
    if exc.status == 401:
        return CliError(
            f"the API at {url} refused the token: {exc.message}",
            "set HPO_API_TOKEN or --token to a live one; " + _MAKE_TOKEN.format(role="submit"),
        )
    if exc.status == 403:
        needs = exc.details.get("needs") if isinstance(exc.details, dict) else None
        role = _NEEDS.get(str(needs), "submit")
        return CliError(
            exc.message, f"use a token with the {role!r} role; " + _MAKE_TOKEN.format(role=role)
        )
    if exc.status == 404:
        return CliError(exc.message, "`hpo study list` shows your team's studies")
    return CliError(exc.message, _problems(exc.details))


def _problems(details: Any) -> str | None:
    """The other problems of a refused body, after the first (which is in the message)."""
    if not isinstance(details, list) or len(details) < 2:
        return None
    shown = [
        f"{'.'.join(str(p) for p in d.get('loc', []) if p != 'body')}: {d.get('msg')}"
        for d in details[1:6]
        if isinstance(d, dict)
    ]
    more = f" (and {len(details) - 6} more)" if len(details) > 6 else ""
    return "also: " + "; ".join(shown) + more


def _reason(exc: Unavailable) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text
