"""The multilayer perceptron of ``mlp_classifier`` and its optimiser."""

from __future__ import annotations

import torch
from torch import nn

from workers.tasks.mlp_config import MLPParams


def build_mlp(n_features: int, n_classes: int, params: MLPParams) -> nn.Sequential:
    """``n_layers`` blocks of Linear -> ReLU -> Dropout, then a Linear to the class logits; each
    block as wide as ``params.widths()`` says (``width_l<k>``, else ``hidden_size``).

    Parameters are initialised on the CPU from torch's global generator (seed it first), so a
    seed gives the same initial model on every device. Dropout is left out when it is 0.
    """
    layers: list[nn.Module] = []
    width = n_features
    for hidden in params.widths():
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if params.dropout > 0:
            layers.append(nn.Dropout(params.dropout))
        width = hidden
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def count_parameters(model: nn.Module) -> int:
    """The number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def set_hyperparameters(optimizer: torch.optim.Optimizer, params: MLPParams) -> None:
    """Set the learning rate and weight decay (SGD: and momentum) of every parameter group
    from ``params``, keeping the optimiser's state (Adam's moments, SGD's momentum buffers):
    ``load_state_dict`` restores the hyperparameters the checkpoint was taken with."""
    for group in optimizer.param_groups:
        group["lr"] = params.lr
        group["weight_decay"] = params.weight_decay
        if params.optimizer == "sgd":
            group["momentum"] = params.momentum


def build_optimizer(model: nn.Module, params: MLPParams) -> torch.optim.Optimizer:
    """The optimiser ``params`` names; SGD with ``params.momentum`` (0.9 unless given), Adam(W)
    with the fused kernel on CUDA."""
    on_cuda = next(model.parameters()).is_cuda
    if params.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=params.lr,
            momentum=params.momentum,
            weight_decay=params.weight_decay,
        )
    optimizer_class = torch.optim.AdamW if params.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(
        model.parameters(), lr=params.lr, weight_decay=params.weight_decay, fused=on_cuda or None
    )
