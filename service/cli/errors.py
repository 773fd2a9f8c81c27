"""Errors a user can fix, told in one or two lines: what is wrong, then what to do.

:func:`run` is the one place that catches them, around every command's handler. Errors it does
not know are bugs: they keep their traceback. ``--debug`` (or ``HPO_LOG_LEVEL=debug``) prints
the traceback of the known ones too.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from service.cli.invocation import runnable
from service.errors import ServiceError

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A command's own refusal: ``message`` says what is wrong, ``hint`` what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def run(handler: Handler, args: argparse.Namespace) -> int:
    """Run a command's handler; a known error becomes a short message and exit status 1,
    Ctrl-C exit status 130 without a traceback."""
    debug = bool(getattr(args, "debug", False)) or debug_env()
    try:
        return handler(args)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `hpo study trials X | head`
        sys.stderr.close()  # nothing more can be printed; keep Python from complaining
        return 0
    except Exception as exc:
        lines = explain(exc)
        if lines is None:
            raise
        if debug:
            traceback.print_exc()
        print(runnable("\n".join(lines)), file=sys.stderr)
        return 1


def debug_env() -> bool:
    return os.environ.get("HPO_LOG_LEVEL", "").strip().lower() == "debug"


def explain(exc: BaseException) -> list[str] | None:
    """The message for ``exc`` (first line ``error: ...``), or None for an unknown error."""
    if isinstance(exc, CliError):
        return _lines(exc.message, exc.hint)
    if isinstance(exc, DBAPIError):
        return _database(exc)
    if isinstance(exc, ServiceError):
        return _lines(exc.message, None)
    if isinstance(exc, ValidationError) and exc.title.endswith("Settings"):
        return _setting(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return _lines(f"{exc.strerror}: {exc.filename}", None)
    return None


def _lines(message: str, hint: str | None) -> list[str]:
    return [f"error: {message}", *([f"  {hint}"] if hint else [])]


def _database(exc: DBAPIError) -> list[str]:
    first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    reason = " ".join(first.split())
    if os.environ.get("HPO_DATABASE_URL"):
        hint = "check HPO_DATABASE_URL (unset, the embedded PostgreSQL is used); --debug for more"
    else:
        hint = "the embedded PostgreSQL (HPO_DATA_DIR) did not answer; --debug for more"
    return _lines(f"cannot use the database: {reason}", hint)


def _setting(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        name = "HPO_" + "_".join(str(p) for p in error["loc"]).upper()
        problems.append(f"{name}: {error['msg']} (got {error.get('input')!r})")
    return _lines("; ".join(problems), "fix the setting (environment variable or its flag)")
