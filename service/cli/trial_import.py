"""``hpo study import``: trials from an export (CSV or JSON Lines) or an Optuna study, sent to
``POST /studies/{id}/trials/import`` in chunks.

Each source becomes a list of :class:`Row`: one import item per finished trial, with where it
came from (a line of the file, a trial number) so that a refusal names it. Waiting and running
trials are left out (counted in the summary). Every chunk is checked first (``dry_run``), then
imported: a bad trial anywhere stores nothing. Chunks hold at most 10 000 trials and about
16 MiB of JSON each.

What each source keeps:

* JSON Lines (``hpo study export --format jsonl``): everything a trial holds, intermediate values
  and constraint values included. A non-finite value was written as ``null`` and cannot come
  back: such a trial is refused, naming its line.
* CSV (``--format csv``): parameters (typed by the target study's space), values, state, fail
  reason, times and user attributes (a cell that reads as JSON is taken as JSON). No
  intermediate values, no constraint values: use JSON Lines for those.
* An Optuna study (``optuna.load_study``): parameters, values, intermediate values, user
  attributes, constraint values, times. A pruned trial's value (Optuna keeps its last
  intermediate value there) is left out, as the service keeps pruned trials.

Constraint values the target study does not declare are left out (and named).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.cli.errors import CliError

MAX_CHUNK_TRIALS = 10_000
MAX_CHUNK_BYTES = 16 * 1024 * 1024
FINISHED = ("complete", "pruned", "failed")


@dataclass(frozen=True)
class Row:
    """One trial to import, and where it came from (for messages)."""

    item: dict[str, Any]
    where: str


@dataclass
class Source:
    """What a file or Optuna study holds for the import."""

    label: str
    rows: list[Row] = field(default_factory=list)
    unfinished: int = 0
    dropped_constraints: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Target:
    """What the CLI needs of the study it imports into."""

    search_space: Mapping[str, Mapping[str, Any]]
    constraints: Sequence[str]

    @classmethod
    def of(cls, study: Mapping[str, Any]) -> Target:
        return cls(study["search_space"], list(study.get("constraints") or []))


# ---- files ----


def read_file(path: str, target: Target) -> Source:
    """An export: ``.jsonl`` (or ``.json``) as JSON Lines, anything else as CSV."""
    file = Path(path)
    if not file.is_file():
        raise CliError(f"no such file: {path}", "give the file `hpo study export` wrote")
    source = Source(file.name)
    with file.open(encoding="utf-8", newline="") as handle:
        if file.suffix.lower() in (".jsonl", ".json", ".ndjson"):
            _read_jsonl(handle, path, target, source)
        else:
            _read_csv(handle, path, target, source)
    return source


def _read_jsonl(lines: Iterable[str], path: str, target: Target, source: Source) -> None:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {number} of {path}"
        try:
            trial = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CliError(
                f"{where} is not JSON ({exc.msg})",
                "give a file `hpo study export --format jsonl` wrote",
            ) from None
        if not isinstance(trial, dict) or "params" not in trial or "state" not in trial:
            raise CliError(f"{where} is not a trial", "each line is a trial of `hpo study export`")
        if trial["state"] not in FINISHED:
            source.unfinished += 1
            continue
        item = _item(trial, target, source)
        if trial.get("intermediate_values"):
            item["intermediate_values"] = trial["intermediate_values"]
        source.rows.append(Row(item, where))


def _item(trial: Mapping[str, Any], target: Target, source: Source) -> dict[str, Any]:
    """An import item from a trial as the API shows it (``TrialOut``)."""
    state = trial["state"]
    item: dict[str, Any] = {"state": state, "params": trial["params"]}
    for name in ("number", "datetime_start", "datetime_complete"):
        if trial.get(name) is not None:
            item[name] = trial[name]
    if trial.get("user_attrs"):
        item["user_attrs"] = trial["user_attrs"]
    if state == "complete":
        item["values"] = trial.get("values")
        constraints = _declared(trial.get("constraints") or {}, target, source)
        if constraints is not None:
            item["constraints"] = constraints
    if state == "failed" and trial.get("fail_reason"):
        item["reason"] = trial["fail_reason"]
    return item


def _declared(
    values: Mapping[str, float], target: Target, source: Source
) -> dict[str, float] | None:
    """The constraint values the target declares (others are left out and remembered)."""
    source.dropped_constraints |= {n for n in values if n not in target.constraints}
    if not target.constraints:
        return None
    return {n: v for n, v in values.items() if n in target.constraints}


def _read_csv(lines: Iterable[str], path: str, target: Target, source: Source) -> None:
    reader = csv.DictReader(lines)
    header = reader.fieldnames or []
    if "state" not in header or "number" not in header:
        raise CliError(
            f"{path} has no 'number' and 'state' columns: not a CSV of `hpo study export`",
            "export with `hpo study export STUDY --format csv`, or give the JSON Lines export",
        )
    for line, row in enumerate(reader, start=2):
        where = f"line {line} of {path}"
        if row["state"] not in FINISHED:
            source.unfinished += 1
            continue
        trial: dict[str, Any] = {
            "state": row["state"],
            "number": _int(row["number"], where, "number"),
            "params": {
                key.removeprefix("params_"): _param(target, key.removeprefix("params_"), cell)
                for key, cell in row.items()
                if key.startswith("params_") and cell not in (None, "")
            },
            "user_attrs": {
                key.removeprefix("user_attrs_"): _attr(cell)
                for key, cell in row.items()
                if key.startswith("user_attrs_") and cell not in (None, "")
            },
            "fail_reason": row.get("fail_reason") or None,
            "datetime_start": row.get("datetime_start") or None,
            "datetime_complete": row.get("datetime_complete") or None,
        }
        if row["state"] == "complete":
            trial["values"] = _csv_values(row, header, where)
        source.rows.append(Row(_item(trial, target, source), where))


def _csv_values(row: Mapping[str, str], header: Sequence[str], where: str) -> list[float]:
    columns = (
        ["value"]
        if "value" in header
        else sorted(
            (c for c in header if c.startswith("values_")), key=lambda c: int(c.split("_")[1])
        )
    )
    return [_float(row[c], where, c) for c in columns]


def _param(target: Target, name: str, cell: str) -> Any:
    """A CSV cell as the value of the target's parameter ``name`` (left as text when the
    space has no such parameter or no choice reads so: the server then says what is wrong)."""
    spec = target.search_space.get(name)
    kind = spec.get("type") if spec else None
    try:
        if kind == "float":
            return float(cell)
        if kind == "int":
            number = float(cell)
            return int(number) if number.is_integer() else number
    except ValueError:
        return cell
    if kind == "categorical" and spec is not None:
        for choice in spec.get("choices", []):
            if str(choice) == cell:
                return choice
    return cell


def _attr(cell: str) -> Any:
    """A user attribute's cell: JSON when it reads as JSON (numbers, objects, lists), True and
    False as booleans (the CSV writer's spelling), else the text itself."""
    if cell in ("True", "False"):
        return cell == "True"
    try:
        return json.loads(cell)
    except json.JSONDecodeError:
        return cell


def _float(cell: str | None, where: str, column: str) -> float:
    try:
        return float(cell or "")
    except ValueError:
        raise CliError(f"{where}: {column} is {cell!r}, not a number") from None


def _int(cell: str | None, where: str, column: str) -> int | None:
    if not cell:
        return None
    try:
        return int(cell)
    except ValueError:
        raise CliError(f"{where}: {column} is {cell!r}, not an integer") from None


# ---- Optuna studies ----


def read_optuna(storage: str, study_name: str, target: Target) -> Source:
    """The finished trials of an Optuna study, read with ``optuna.load_study``."""
    import optuna

    _check_storage(storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise CliError(
            f"no Optuna study named {study_name!r} in {storage}",
            f"`optuna studies --storage {storage}` lists them",
        ) from None
    except Exception as exc:  # what storages raise on a bad URL varies: ValueError, DB errors
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise CliError(
            f"cannot open the Optuna storage {storage}: {reason}",
            "give an Optuna storage URL such as sqlite:///optuna.db or postgresql://user@host/db",
        ) from None
    source = Source(f"optuna:{study_name}")
    for trial in study.get_trials(deepcopy=False):
        state = _OPTUNA_STATES.get(trial.state.name)
        if state is None:
            source.unfinished += 1
            continue
        source.rows.append(Row(_optuna_item(trial, state, target, source), f"trial {trial.number}"))
    return source


_OPTUNA_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}


def _optuna_item(trial: Any, state: str, target: Target, source: Source) -> dict[str, Any]:
    item: dict[str, Any] = {
        "number": trial.number,
        "state": state,
        "params": dict(trial.params),
        "user_attrs": dict(trial.user_attrs),
    }
    from service.spec import param_spec_json  # optuna, like this path, is loaded only here

    undeclared = {
        name: param_spec_json(dist)
        for name, dist in trial.distributions.items()
        if name not in target.search_space
    }
    if undeclared:  # define-by-run parameters: their distributions come along
        item["distributions"] = undeclared
    for name in ("datetime_start", "datetime_complete"):
        moment = getattr(trial, name)
        if moment is not None:
            item[name] = moment.isoformat()
    if state == "complete":
        item["values"] = list(trial.values)
        constraints = _declared(_optuna_constraints(trial), target, source)
        if constraints is not None:
            item["constraints"] = constraints
    if trial.intermediate_values:
        item["intermediate_values"] = [
            {"step": step, "value": value if math.isfinite(value) else None}
            for step, value in sorted(trial.intermediate_values.items())
        ]
    return item


def _optuna_constraints(trial: Any) -> dict[str, float]:
    found = trial.constraints
    if isinstance(found, Mapping):
        return {str(k): float(v) for k, v in found.items()}
    return {str(i): float(v) for i, v in enumerate(found or ())}


def _check_storage(storage: str) -> None:
    """An SQLite file that does not exist would be created empty by Optuna: refuse it."""
    if storage.startswith("sqlite:///"):
        path = storage.removeprefix("sqlite:///").split("?", 1)[0]
        if path and path != ":memory:" and not os.path.exists(path):
            raise CliError(f"no such file: {path}", "give the SQLite file of the Optuna study")


# ---- sending ----


def chunks(rows: Sequence[Row]) -> Iterator[Sequence[Row]]:
    """At most MAX_CHUNK_TRIALS trials and about MAX_CHUNK_BYTES of JSON per request."""
    start, size = 0, 0
    for end, row in enumerate(rows):
        weight = len(json.dumps(row.item, default=str))
        if end > start and (end - start >= MAX_CHUNK_TRIALS or size + weight > MAX_CHUNK_BYTES):
            yield rows[start:end]
            start, size = end, 0
        size += weight
    if start < len(rows):
        yield rows[start:]


Send = Callable[[Sequence[Mapping[str, Any]], bool], Mapping[str, Any]]


def send(
    rows: Sequence[Row], post: Send, refused: Callable[[Exception], Mapping[str, Any] | None]
) -> int:
    """Check every chunk (``dry_run``), then import them; the number of trials imported.
    ``post(items, dry_run)`` calls the API; ``refused(exc)`` gives the details of an API
    refusal (None: not one), whose index is mapped back to the row it names."""
    parts = list(chunks(rows))
    imported = 0
    for dry_run in (True, False):
        for part in parts:
            try:
                post([row.item for row in part], dry_run)
            except Exception as exc:
                failure = _refusal(exc, refused(exc), part, imported)
                if failure is exc:
                    raise
                raise failure from None
            imported += 0 if dry_run else len(part)
    return imported


def _refusal(
    exc: Exception, details: Mapping[str, Any] | None, part: Sequence[Row], imported: int
) -> Exception:
    index = details.get("index") if details else None
    if details is None or not isinstance(index, int) or not 0 <= index < len(part):
        return exc
    done = f"the first {imported} trials were imported" if imported else "nothing was imported"
    return CliError(
        f"{part[index].where}: {_problem(details.get('problems'), exc)}",
        f"{done}; fix that trial (or leave it out) and run the import again",
    )


def _problem(problems: Any, exc: Exception) -> str:
    """The first problem without the ``trials[i]`` prefix (the row's place replaces it)."""
    if isinstance(problems, list) and problems and isinstance(problems[0], dict):
        loc = [str(p) for p in problems[0].get("loc", [])[2:]]
        msg = str(problems[0].get("msg", ""))
        return f"{'.'.join(loc)}: {msg}" if loc else msg
    return str(exc)
