"""CSV and JSON Lines renderings of a study's trials, produced chunk by chunk.

CSV has one column per parameter (``params_<name>``, search-space order first) and per user
attribute (``user_attrs_<key>``, JSON for anything but a string, number or boolean); values are
``value`` for one objective, ``values_<i>`` for several. A parameter a trial does not hold (one
whose ``when`` is false for it in a conditional space) is an empty cell. JSON Lines has one
``TrialOut`` per line, whose ``params`` hold the trial's parameters only.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from service.trials.schemas import TrialOut

_ROWS_PER_CHUNK = 500


@dataclass(frozen=True)
class CsvColumns:
    """The column layout of one study's CSV export."""

    n_objectives: int
    params: list[str]
    user_attrs: list[str]

    @staticmethod
    def of(
        n_objectives: int,
        search_space: Sequence[str],
        params: Iterable[str],
        user_attrs: Iterable[str],
    ) -> CsvColumns:
        ordered = list(search_space) + sorted(set(params) - set(search_space))
        return CsvColumns(n_objectives, ordered, sorted(set(user_attrs)))

    def header(self) -> list[str]:
        values = (
            ["value"]
            if self.n_objectives == 1
            else [f"values_{i}" for i in range(self.n_objectives)]
        )
        return [
            "number",
            "id",
            "state",
            *values,
            *(f"params_{name}" for name in self.params),
            "datetime_start",
            "datetime_complete",
            "duration_s",
            "attempt",
            "fail_reason",
            "parent_trial_id",
            "started_from_step",
            *(f"user_attrs_{key}" for key in self.user_attrs),
        ]

    def row(self, trial: TrialOut) -> list[Any]:
        values = list(trial.values) if trial.values else [None] * self.n_objectives
        return [
            trial.number,
            trial.id,
            trial.state,
            *values[: self.n_objectives],
            *(_cell(trial.params.get(name)) for name in self.params),
            trial.datetime_start.isoformat() if trial.datetime_start else None,
            trial.datetime_complete.isoformat() if trial.datetime_complete else None,
            trial.duration_s,
            trial.attempt,
            trial.fail_reason,
            trial.parent_trial_id,
            trial.started_from_step,
            *(_cell(trial.user_attrs.get(key)) for key in self.user_attrs),
        ]


def csv_chunks(columns: CsvColumns, trials: Iterable[TrialOut]) -> Iterator[str]:
    """The header, then rows in chunks of a few hundred."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns.header())
    for n, trial in enumerate(trials, start=1):
        writer.writerow(columns.row(trial))
        if n % _ROWS_PER_CHUNK == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def jsonl_chunks(trials: Iterable[TrialOut]) -> Iterator[str]:
    lines: list[str] = []
    for trial in trials:
        lines.append(trial.model_dump_json())
        if len(lines) == _ROWS_PER_CHUNK:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
