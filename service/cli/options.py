"""Options that many commands share, accepted before or after the subcommand.

``hpo study list --api URL`` and ``hpo study --api URL list`` both work: the top-level parser
gives every shared option its default, and each parser that accepts one declares it with
``default=SUPPRESS``, so that a later parser only sets what was given to it (argparse copies a
subcommand's values over its parent's).
"""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_API = "http://127.0.0.1:8000"
DEFAULTS: dict[str, Any] = {"api": None, "token": None, "json": False, "debug": False}


def debug_option() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error (also HPO_LOG_LEVEL=debug)",
    )
    return parent


def api_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--api", default=argparse.SUPPRESS, help=f"API URL (HPO_API_URL, default {DEFAULT_API})"
    )
    parent.add_argument(
        "--token", default=argparse.SUPPRESS, help="API token (HPO_API_TOKEN; hpo token create)"
    )
    return parent


def json_option() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON, for scripts"
    )
    return parent


def command(
    commands: Any, name: str, help: str, *, api: bool = False, json: bool = False, **kw: Any
) -> argparse.ArgumentParser:
    """A subcommand with ``--debug``, and ``--api``/``--token`` and ``--json`` when asked."""
    parents = [debug_option()]
    if api:
        parents.append(api_options())
    if json:
        parents.append(json_option())
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help, parents=parents, **kw)
    return parser


def group(
    commands: Any, name: str, help: str, *, api: bool = False, **kw: Any
) -> tuple[argparse.ArgumentParser, Any]:
    """A command with subcommands (``hpo study``): ``hpo study`` alone prints its help."""
    parser = command(commands, name, help, api=api, **kw)
    sub = parser.add_subparsers(title=f"{name} commands", metavar="COMMAND")

    def print_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(handler=print_help)
    return parser, sub
