"""The fast training loop for small models on tensors that already live on the device.

Per epoch there is one device-side ``randperm`` and one gather of the training set in that
order; batches are then views (slices) of it. There is no DataLoader, no host-to-device copy
and, on CUDA, no host synchronisation until :func:`run_epoch` reads the epoch's three numbers
with a single transfer. On CUDA matmuls may use TF32 and the forward passes run under bfloat16
autocast (losses are computed in float32); on the CPU everything stays float32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Final, Protocol

import torch
import torch.nn.functional as F
from torch import nn

EVAL_CHUNK: Final = 65_536
"""Validation rows per forward pass."""


class SplitTensors(Protocol):
    """Training and validation tensors on one device (a prepared dataset)."""

    @property
    def x_train(self) -> torch.Tensor: ...
    @property
    def y_train(self) -> torch.Tensor: ...
    @property
    def x_val(self) -> torch.Tensor: ...
    @property
    def y_val(self) -> torch.Tensor: ...


@dataclass(frozen=True)
class EpochStats:
    """One epoch's figures, read from the device once."""

    train_loss: float
    val_loss: float
    val_accuracy: float


def configure_device(device: torch.device) -> None:
    """Process-wide speed settings for ``device``: allow TF32 matmuls on CUDA. Idempotent."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True


def autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """bfloat16 autocast on CUDA, nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def shuffle_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on ``device`` for the per-epoch permutations, seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """One pass over ``(x, y)`` in a fresh random order; the mean loss as a 0-d device tensor.

    The last batch may be smaller than ``batch_size``. Does not synchronise with the device.
    """
    model.train()
    n = x.shape[0]
    order = torch.randperm(n, device=x.device, generator=generator)
    xs, ys = x.index_select(0, order), y.index_select(0, order)
    total = torch.zeros((), device=x.device)
    for start in range(0, n, batch_size):
        xb, yb = xs[start : start + batch_size], ys[start : start + batch_size]
        with autocast(x.device):
            loss = F.cross_entropy(model(xb).float(), yb)
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        optimizer.step()
        total += loss.detach() * yb.shape[0]
    return total / n


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and accuracy on ``(x, y)``, as 0-d device tensors (no sync)."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    with torch.inference_mode(), autocast(x.device):
        for start in range(0, x.shape[0], EVAL_CHUNK):
            logits = model(x[start : start + EVAL_CHUNK]).float()
            labels = y[start : start + EVAL_CHUNK]
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(dim=1) == labels).sum()
    return loss_sum / x.shape[0], correct / x.shape[0]


def run_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: SplitTensors,
    batch_size: int,
    generator: torch.Generator,
) -> EpochStats:
    """Train one epoch, evaluate on the validation split, and read the figures (one sync)."""
    train_loss = train_epoch(model, optimizer, data.x_train, data.y_train, batch_size, generator)
    val_loss, val_accuracy = evaluate(model, data.x_val, data.y_val)
    figures = torch.stack([train_loss, val_loss, val_accuracy]).tolist()
    return EpochStats(train_loss=figures[0], val_loss=figures[1], val_accuracy=figures[2])
