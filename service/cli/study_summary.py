"""How ``hpo study show``, ``best`` and ``trials`` print a study and its trials for people."""

from __future__ import annotations

from typing import Any

from service.cli.output import cell, params_text, print_table, timestamp


def print_study(study: dict[str, Any], best: dict[str, Any]) -> None:
    """A readable summary: what is searched how, progress, the best trial so far."""
    print(f"{study['name']}  (id {study['id']}, team {study['team']})  {study['state']}")
    space = [f"{name}: {_dimension(d)}" for name, d in study["search_space"].items()]
    rows: list[tuple[str, str]] = [
        ("optuna name", study["optuna_study_name"]),
        ("objective", ", ".join(_objectives(study))),
        ("search space", space[0] if space else "-"),
        *(("", s) for s in space[1:]),
        ("sampler", _named(study["sampler"])),
        ("pruner", _named(study["pruner"])),
        *((("scheduler", _named(study["scheduler"])),) if study.get("scheduler") else ()),
        ("task", _named(study["task"]) if study["task"] else "-"),
        ("trials", _progress(study)),
        ("limits", _limits(study)),
        ("gpu-hours", gpu_hours_line(study)),
        ("best", _best_line(study, best)),
        ("created", f"{timestamp(study['created_at'])} (updated {timestamp(study['updated_at'])})"),
    ]
    if study.get("state_reason"):
        rows.insert(0, ("why", study["state_reason"]))
    rows[0:0] = [("warning", warning) for warning in study.get("warnings") or []]
    for label, text in rows:
        print(f"  {label:<13} {text}")


def print_best(study: dict[str, Any], best: dict[str, Any]) -> None:
    front = best.get("pareto_front")
    if front is not None:
        print(f"{len(front)} trials of {study['name']} on the Pareto front")
        print_trials(front)
        return
    trial = best.get("best")
    if trial is None:
        print(f"no trial of {study['name']} has completed yet")
        return
    metric = (study["metric_names"] or ["value"])[0]
    print(f"trial #{trial['number']} of {study['name']}: {metric} {cell(trial['value'])}")
    for name, value in trial["params"].items():
        print(f"  {name:<16} {cell(value)}")
    for key in ("epochs_run", "wall_time_s", "n_params", "device"):
        if key in trial["user_attrs"]:
            print(f"  {key:<16} {cell(trial['user_attrs'][key])}")


def print_trials(trials: list[dict[str, Any]]) -> None:
    names = list(dict.fromkeys(name for t in trials for name in t["params"]))
    headers = [">#", "STATE", ">VALUE", *(f">{n}" for n in names), ">SECONDS", "NOTE"]
    print_table(headers, [_trial_row(t, names) for t in trials])


def _trial_row(trial: dict[str, Any], names: list[str]) -> list[object]:
    values = trial["values"] or []
    value: object = trial["value"] if len(values) <= 1 else " ".join(cell(v) for v in values)
    if trial["state"] == "failed":
        note = trial["fail_reason"] or ""
    elif trial["state"] == "running":
        note = trial["worker_id"] or ""
    elif trial.get("parent_trial_id") is not None:
        note = (
            f"child of trial id {trial['parent_trial_id']} from step {trial['started_from_step']}"
        )
    elif trial.get("feasible") is False:
        note = "infeasible: " + _violated(trial.get("constraints") or {})
    else:
        note = ""
    return [
        trial["number"],
        trial["state"],
        value,
        *(trial["params"].get(n) for n in names),
        None if trial["duration_s"] is None else f"{trial['duration_s']:.1f}",
        note,
    ]


def _violated(constraints: dict[str, Any]) -> str:
    """The constraint values above 0 (a trial with one is never the best)."""
    return ", ".join(f"{k}={cell(v)}" for k, v in constraints.items() if v > 0)


def _objectives(study: dict[str, Any]) -> list[str]:
    names = study["metric_names"] or [None] * len(study["directions"])
    return [f"{d} {n}" if n else d for d, n in zip(study["directions"], names, strict=True)]


def _dimension(dim: dict[str, Any]) -> str:
    text = _range(dim)
    when = dim.get("when")
    if when:
        text += ", only when " + " and ".join(_condition(p, c) for p, c in when.items())
    return text


def _range(dim: dict[str, Any]) -> str:
    kind = dim.get("type")
    if kind == "categorical":
        return "categorical " + ", ".join(cell(c) for c in dim.get("choices", []))
    if kind in ("float", "int"):
        text = f"{kind} {cell(dim.get('low'))} .. {cell(dim.get('high'))}"
        if dim.get("log"):
            text += ", log"
        if dim.get("step") is not None and not (kind == "int" and dim["step"] == 1):
            text += f", step {cell(dim['step'])}"
        return text
    return str(dim)


def _condition(parent: str, condition: Any) -> str:
    """``optimizer in sgd, adam`` for listed values, ``n_layers >= 3`` for a range."""
    if isinstance(condition, list):
        return f"{parent} in {', '.join(cell(v) for v in condition)}"
    if isinstance(condition, dict):
        low, high = condition.get("min"), condition.get("max")
        if low is not None and high is not None:
            return f"{cell(low)} <= {parent} <= {cell(high)}"
        if low is not None:
            return f"{parent} >= {cell(low)}"
        if high is not None:
            return f"{parent} <= {cell(high)}"
    return f"{parent}: {condition}"


def _named(spec: dict[str, Any]) -> str:
    """``{"name": "median", "options": {...}}`` or a task: its name, then its settings."""
    options = spec.get("options", {k: v for k, v in spec.items() if k != "name"})
    settings = ", ".join(f"{k}={cell(v)}" for k, v in (options or {}).items())
    return f"{spec.get('name')} ({settings})" if settings else str(spec.get("name"))


def _progress(study: dict[str, Any]) -> str:
    c = study["trial_counts"]
    budget = f" of {study['max_trials']}" if study["max_trials"] else ""
    return (
        f"{study['n_trials_started']}{budget} started: {c['complete']} complete, "
        f"{c['pruned']} pruned, {c['failed']} failed, {c['running']} running, "
        f"{c['waiting']} waiting"
    )


def _limits(study: dict[str, Any]) -> str:
    parallel = study["max_parallel"]
    at_once = f"{parallel} at once" if parallel else "no limit on trials at once"
    return f"{at_once}, {study['max_retries']} retries, lease {study['lease_seconds']} s"


def gpu_hours_line(study: dict[str, Any]) -> str:
    """``0.42 of 2 GPU-hours used``, or ``0.42 GPU-hours used`` without a budget."""
    used = float(study.get("gpu_hours_used") or 0.0)
    budget = study.get("max_gpu_hours")
    return f"{used:.3g}{f' of {budget:g}' if budget else ''} GPU-hours used"


def _best_line(study: dict[str, Any], best: dict[str, Any]) -> str:
    if best.get("pareto_front") is not None:
        return f"{len(best['pareto_front'])} trials on the Pareto front (`hpo study best`)"
    trial = best.get("best")
    if trial is None:
        return "no complete trial yet"
    return f"#{trial['number']}  {cell(trial['value'])}  {params_text(trial['params'])}"
