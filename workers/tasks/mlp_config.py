"""The hyperparameters and the task spec of ``mlp_classifier``, parsed from free JSON.

Parsing is strict: a missing or invalid hyperparameter, and any hyperparameter the task does
not know (it knows :data:`PARAM_NAMES` and the per-layer widths ``width_l1``, ``width_l2``...),
raise ``TaskFailed("bad_params")``; a missing or invalid task spec key raises
``TaskFailed("bad_task_spec")``. Task spec keys this task does not use (``name`` and whatever
else the service stores there) are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from workers.tasks.dataset_spec import DatasetSpec, dataset_spec_from_task
from workers.tasks.fields import read_float, read_int, read_str, reject_unknown

OptimizerName = Literal["adam", "adamw", "sgd"]
OPTIMIZERS: Final = ("adam", "adamw", "sgd")
PARAM_NAMES: Final = frozenset(
    {
        "lr",
        "n_layers",
        "batch_size",
        "hidden_size",
        "dropout",
        "weight_decay",
        "optimizer",
        "momentum",
    }
)
"""The hyperparameters with fixed names; the per-layer widths are ``width_l1``, ``width_l2``..."""
_WIDTH = re.compile(r"width_l([1-9][0-9]*)")


def layer_of(name: str) -> int | None:
    """The layer (from 1) a ``width_l<k>`` hyperparameter sets, or None for any other name."""
    match = _WIDTH.fullmatch(name)
    return int(match.group(1)) if match else None


def is_param_name(name: str) -> bool:
    """Whether ``mlp_classifier`` knows a hyperparameter of this name."""
    return name in PARAM_NAMES or layer_of(name) is not None


@dataclass(frozen=True)
class MLPParams:
    """Hyperparameters; the defaults are those of an absent optional parameter."""

    lr: float
    n_layers: int
    batch_size: int
    hidden_size: int = 128
    dropout: float = 0.0
    weight_decay: float = 0.0
    optimizer: OptimizerName = "adam"
    momentum: float = 0.9
    """SGD's momentum (Adam and AdamW ignore it)."""
    layer_widths: tuple[int | None, ...] = ()
    """``width_l1``, ``width_l2``... up to ``n_layers``, None where not given."""

    def widths(self) -> list[int]:
        """Each hidden layer's width: its ``width_l<k>`` when given, else ``hidden_size``."""
        given = dict(enumerate(self.layer_widths))
        return [given.get(k) or self.hidden_size for k in range(self.n_layers)]

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> MLPParams:
        """Validated parameters, or ``TaskFailed("bad_params")``.

        ``width_l<k>`` beyond ``n_layers`` are checked and then ignored, as is ``momentum``
        for another optimizer than SGD: a space without conditions may sample them.
        """
        reason = "bad_params"
        reject_unknown(params, PARAM_NAMES | {n for n in params if layer_of(n)}, reason=reason)
        optimizer = read_str(params, "optimizer", reason=reason, default="adam", choices=OPTIMIZERS)
        n_layers = read_int(params, "n_layers", reason=reason, minimum=1)
        return cls(
            lr=read_float(params, "lr", reason=reason, low=0.0, low_open=True),
            n_layers=n_layers,
            batch_size=read_int(params, "batch_size", reason=reason, minimum=1),
            hidden_size=read_int(params, "hidden_size", reason=reason, default=128, minimum=1),
            dropout=read_float(
                params, "dropout", reason=reason, default=0.0, low=0.0, high=1.0, high_open=True
            ),
            weight_decay=read_float(params, "weight_decay", reason=reason, default=0.0, low=0.0),
            optimizer=cast(OptimizerName, optimizer),
            momentum=read_float(
                params, "momentum", reason=reason, default=0.9, low=0.0, high=1.0, high_open=True
            ),
            layer_widths=_layer_widths(params, n_layers),
        )


def _layer_widths(params: Mapping[str, Any], n_layers: int) -> tuple[int | None, ...]:
    widths: dict[int, int] = {}
    for name in params:
        layer = layer_of(name)
        if layer is not None:
            widths[layer] = read_int(params, name, reason="bad_params", minimum=1)
    return tuple(widths.get(layer) for layer in range(1, n_layers + 1))


@dataclass(frozen=True)
class MLPTaskSpec:
    """What to train on and for how long."""

    dataset: DatasetSpec
    epochs: int

    @classmethod
    def parse(cls, task: Mapping[str, Any]) -> MLPTaskSpec:
        """A validated spec, or ``TaskFailed("bad_task_spec")``.

        The dataset name is not checked here: an unknown one fails with ``"unknown_dataset"``
        when it is loaded.
        """
        return cls(
            dataset=dataset_spec_from_task(task),
            epochs=read_int(task, "epochs", reason="bad_task_spec", minimum=1),
        )
