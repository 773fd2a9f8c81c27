"""How to run ``hpo`` (or another of this installation's commands) from the user's shell, so
that printed hints work as printed: after the quick start ``.venv/bin`` is not on PATH."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def console_script(name: str) -> str:
    """How to run this installation's script ``name`` (installed, or once installed): ``name``
    when PATH finds this installation's, else its path (``.venv/bin/hpo``, relative when it
    lies under the current directory)."""
    script = _scripts() / name
    found = shutil.which(name)
    if found and Path(found).resolve() == script.resolve():
        return name
    return shlex.quote(_shortest(script))


def hpo_command() -> str:
    """How to run ``hpo``: see :func:`console_script`; ``<python> -m service`` without it."""
    if (_scripts() / "hpo").exists():
        return console_script("hpo")
    return f"{shlex.quote(_shortest(Path(sys.executable)))} -m service"


def runnable(text: str) -> str:
    """``text`` with each `` `hpo ...` `` command in it made runnable as printed."""
    command = hpo_command()
    return text if command == "hpo" else text.replace("`hpo ", f"`{command} ")


def _scripts() -> Path:
    """Where this installation's console scripts are: beside the interpreter."""
    return Path(sys.executable).parent


def _shortest(path: Path) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)
    return relative if not relative.startswith("..") else str(path)
