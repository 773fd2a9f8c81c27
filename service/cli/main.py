"""``hpo``: the parser of every command, and the entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from service.cli import fleet, server, slurm, studies
from service.cli.errors import Handler, run
from service.cli.options import DEFAULTS, debug_option

# Options whose values may start with "-" (`--sort -value`), which argparse takes for options.
_DASHED_VALUES = ("--sort",)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_attach_dashed_values(sys.argv[1:] if argv is None else argv))
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return run(handler, args)


def _attach_dashed_values(argv: Sequence[str]) -> list[str]:
    """``--sort -value`` as ``--sort=-value``."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in _DASHED_VALUES and arg.startswith("-"):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def build_parser() -> argparse.ArgumentParser:
    # imported here: service.auth.cli builds on service.cli.options, which imports this package
    from service.auth.cli import add_commands as add_token_commands

    parser = argparse.ArgumentParser(
        prog="hpo",
        description="Bayesian optimization service: API server, database, studies, workers.",
        parents=[debug_option()],
    )
    parser.set_defaults(**DEFAULTS)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    server.add_commands(commands)
    studies.add_commands(commands)
    slurm.add_commands(commands)
    add_token_commands(commands)
    _add_workers(commands)
    return parser


def _add_workers(commands: Any) -> None:
    """``hpo worker`` (run one; ``hpo worker list``) and ``hpo demo``, from ``workers``."""
    try:
        from workers.cli import add_commands
    except ImportError:  # the worker's extra (PyTorch) is not installed
        return
    fleet.add_commands(add_commands(commands))
