"""Checks, at study creation, that a study naming a built-in task gives that task what it needs.

A study may name any task a worker has (``hpo.tasks`` entry points included); the server only
knows the built-in ``mlp_classifier``. For it, the task spec and the search space are checked
with the very parsers the worker uses (``workers.tasks.mlp_config``, which imports no torch), so a
study whose every trial would fail in 0.1 s with ``bad_params`` or ``bad_task_spec`` is refused
with a 422 naming what is wrong instead:

* the task spec must parse (``dataset`` and ``epochs`` given and valid, a known dataset);
* the space must hold every required hyperparameter, unconditionally (no ``when``: every trial
  needs it), and no hyperparameter the task does not know;
* every value the space can produce at its edges (each bound of a number, each choice) must be
  accepted by the task.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from service.errors import SpecError
from service.spec.search_space import CategoricalParam, FloatParam, IntParam, ParamSpec
from workers.tasks.base import TaskFailed
from workers.tasks.dataset_spec import BUILTIN_DATASETS
from workers.tasks.mlp_config import PARAM_NAMES, MLPParams, MLPTaskSpec, is_param_name

BUILTIN_TASK: Final = "mlp_classifier"
_REQUIRED: Final = ("lr", "n_layers", "batch_size")
# Values the task accepts for its required hyperparameters: each edge is tried on top of these.
_REFERENCE: Final = {"lr": 1e-3, "n_layers": 1, "batch_size": 32}


def check_task(task: Mapping[str, Any] | None, space: Mapping[str, ParamSpec]) -> None:
    """Raise :class:`SpecError` if the study's built-in task cannot run with this space."""
    if task is None or task.get("name") != BUILTIN_TASK:
        return
    _check_spec(task)
    details = _name_details(space) or list(_refused_edges(space))
    if details:
        raise SpecError(
            f"the search space does not fit the task {BUILTIN_TASK!r}: {details[0]['msg']}",
            details,
        )


def _name_details(space: Mapping[str, ParamSpec]) -> list[dict[str, Any]]:
    """A detail per required hyperparameter missing or conditional, and per unknown name."""
    missing = [name for name in _REQUIRED if name not in space]
    conditional = [name for name in _REQUIRED if name in space and space[name].when]
    unknown = sorted(name for name in space if not is_param_name(name))
    known = f"{', '.join(sorted(PARAM_NAMES))} and width_l1, width_l2, ..."
    return (
        [
            {"loc": ["search_space"], "msg": f"{BUILTIN_TASK} needs the hyperparameter {name!r}"}
            for name in missing
        ]
        + [
            {
                "loc": ["search_space", name, "when"],
                "msg": f"{BUILTIN_TASK} needs {name!r} in every trial: it cannot have a `when`",
            }
            for name in conditional
        ]
        + [
            {
                "loc": ["search_space", name],
                "msg": f"{BUILTIN_TASK} has no hyperparameter {name!r} (it knows {known})",
            }
            for name in unknown
        ]
    )


def _check_spec(task: Mapping[str, Any]) -> None:
    try:
        spec = MLPTaskSpec.parse(task)
    except TaskFailed as failure:
        raise SpecError(
            f"task: {failure.message}", [{"loc": ["task"], "msg": failure.message}]
        ) from None
    if spec.dataset.name not in BUILTIN_DATASETS:
        known = ", ".join(sorted(BUILTIN_DATASETS))
        message = f"unknown dataset {spec.dataset.name!r}; {BUILTIN_TASK} knows {known}"
        raise SpecError(f"task.dataset: {message}", [{"loc": ["task", "dataset"], "msg": message}])


def _refused_edges(space: Mapping[str, ParamSpec]) -> Iterator[dict[str, Any]]:
    """A detail for each parameter with an edge value the task refuses (tried on its own, the
    other hyperparameters at accepted values)."""
    for name, spec in space.items():
        for value in _edges(spec):
            try:
                MLPParams.parse({**_REFERENCE, name: value})
            except TaskFailed as failure:
                yield {
                    "loc": ["search_space", name],
                    "msg": f"{BUILTIN_TASK} refuses {name}={value!r}: {failure.message}",
                }
                break


def _edges(spec: ParamSpec) -> list[Any]:
    if isinstance(spec, FloatParam | IntParam):
        return [spec.low, spec.high]
    assert isinstance(spec, CategoricalParam)
    return list(spec.choices)
