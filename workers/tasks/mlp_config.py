"""The hyperparameters and the task spec of ``mlp_classifier``, parsed from free JSON.

Parsing is strict: a missing or invalid hyperparameter, and any hyperparameter the task does
not know, raise ``TaskFailed("bad_params")``; a missing or invalid task spec key raises
``TaskFailed("bad_task_spec")``. Task spec keys this task does not use (``name`` and whatever
else the service stores there) are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from workers.tasks.dataset_spec import DatasetSpec, dataset_spec_from_task
from workers.tasks.fields import read_float, read_int, read_str, reject_unknown

OptimizerName = Literal["adam", "adamw", "sgd"]
OPTIMIZERS: Final = ("adam", "adamw", "sgd")
PARAM_NAMES: Final = frozenset(
    {"lr", "n_layers", "batch_size", "hidden_size", "dropout", "weight_decay", "optimizer"}
)


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

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> MLPParams:
        """Validated parameters, or ``TaskFailed("bad_params")``."""
        reason = "bad_params"
        reject_unknown(params, PARAM_NAMES, reason=reason)
        optimizer = read_str(params, "optimizer", reason=reason, default="adam", choices=OPTIMIZERS)
        return cls(
            lr=read_float(params, "lr", reason=reason, low=0.0, low_open=True),
            n_layers=read_int(params, "n_layers", reason=reason, minimum=1),
            batch_size=read_int(params, "batch_size", reason=reason, minimum=1),
            hidden_size=read_int(params, "hidden_size", reason=reason, default=128, minimum=1),
            dropout=read_float(
                params, "dropout", reason=reason, default=0.0, low=0.0, high=1.0, high_open=True
            ),
            weight_decay=read_float(params, "weight_decay", reason=reason, default=0.0, low=0.0),
            optimizer=cast(OptimizerName, optimizer),
        )


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
