"""What read commands print: plain aligned tables for people, JSON (``--json``) for scripts."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Columns as wide as their widest cell; a header starting with ``>`` is right-aligned
    (numbers)."""
    right = [h.startswith(">") for h in headers]
    names = [h.lstrip(">") for h in headers]
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(names)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    print(line(names))
    for row in cells:
        print(line(row))


def cell(value: object) -> str:
    """A value as a table shows it: floats to 5 significant digits, times to the second."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.5g}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def timestamp(value: str | None) -> str:
    """An API timestamp (ISO 8601) in local time, to the second."""
    if not value:
        return "-"
    return cell(dt.datetime.fromisoformat(value).astimezone())


def params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={cell(v)}" for k, v in params.items())
