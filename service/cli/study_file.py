"""Study files and values as users write them.

A ``.json`` file is read as JSON; anything else as YAML, where numbers are numbers as in
YAML 1.2 and JSON: PyYAML follows YAML 1.1, which reads ``1e-5`` (no dot) as a string.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from service.cli.errors import CliError


class _Loader(yaml.SafeLoader):
    """YAML 1.1's safe loader, plus YAML 1.2's floats: ``1e-5``, ``1E5``, ``-2e+3``."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_study(path: str) -> dict[str, Any]:
    """The study in ``path`` (``-``: standard input) as a dict; refuses what is not one."""
    name = "standard input" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror}") from exc
    document = _parse_json(text, name) if path.endswith(".json") else _parse_yaml(text, name)
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise CliError(f"{name} holds a {kind}, not a study", "a study is a mapping: name: ...")
    return document


def parse_value(text: str) -> Any:
    """A value from the command line: a YAML/JSON scalar or list (``0.01``, ``1e-5``, ``64``,
    ``true``, ``[1, 2]``), else the text itself."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


def _parse_json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"{name} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc


def _parse_yaml(text: str, name: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1} column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CliError(f"{name} is not valid YAML: {problem}{at}") from exc
