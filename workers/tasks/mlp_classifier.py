"""The built-in task ``mlp_classifier``: an MLP trained with cross-entropy on a tabular dataset.

Contract of :meth:`MLPClassifierTask.run`:

- **Objective**: the *best* (lowest) validation cross-entropy over the epochs run, i.e. the
  value a checkpoint-on-best policy would keep. Each epoch's validation loss is reported with
  ``ctx.report(step=epoch)``, epochs counted from 0.
- **Order per epoch**: train, evaluate, NaN check, report, then (unless pruned) checkpoint,
  then the stop check. A pruned run returns at once with the last reported loss as its value;
  a stop request returns ``"interrupted"`` right after the epoch's checkpoint.
- **Resume**: a checkpoint from ``ctx.load_checkpoint()`` restores model, optimiser, progress
  and generators, and training continues at the next epoch without reporting earlier epochs
  again. An unusable checkpoint is logged and training starts from scratch. The optimiser's
  hyperparameters (learning rate, weight decay, SGD's momentum) are then set from ``params``:
  a child of population-based training resumes its parent's checkpoint with its own values,
  weights and moments kept, and its best value counts from ``ctx.started_from_step`` on (the
  parent's earlier best is not the child's).
- **Seeds**: torch's generators are seeded from ``ctx.seed`` (initial weights, dropout) and the
  shuffling generator too; a trial is reproducible on one device type when it runs alone in
  its process (dropout draws from torch's global generators).
- **Model artifact**: a run that completes saves the final weights (``torch.save`` of the
  model's state dict on the CPU, readable with ``weights_only=True``) as the artifact
  ``model`` with ``ctx.save_artifact``; a server without object storage keeps none (the
  context logs it) and the trial completes all the same.
- **Attributes** (``ctx.set_attrs``, at the end of every run that got past parsing, whatever
  the outcome): ``seed``, ``wall_time_s`` (this attempt), ``epochs_run``, ``n_params``,
  ``device``, ``peak_gpu_mem_mb`` (CUDA only, else null), ``best_epoch``,
  ``resumed_from_epoch`` (null for a fresh start).
- **Failures**: ``TaskFailed`` with ``bad_params``/``bad_task_spec`` (see ``mlp_config``),
  ``unknown_dataset`` (see ``datasets``), ``nan`` and ``oom`` (see ``failures``).
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field

import torch

from workers.tasks import checkpoint
from workers.tasks.base import JSON, TaskResult, TrialContext
from workers.tasks.checkpoint import CheckpointError, Progress, Trainee
from workers.tasks.datasets import DeviceDataset, load_dataset
from workers.tasks.failures import call_mapping_oom, check_finite
from workers.tasks.mlp import build_mlp, build_optimizer, count_parameters, set_hyperparameters
from workers.tasks.mlp_config import MLPParams, MLPTaskSpec
from workers.tasks.training import configure_device, run_epoch, shuffle_generator

logger = logging.getLogger(__name__)


@dataclass
class _RunRecord:
    """Scalars about one attempt, for the trial attributes (never holds tensors)."""

    seed: int
    device: torch.device
    started: float = field(default_factory=time.perf_counter)
    epochs_run: int = 0
    n_params: int | None = None
    best_epoch: int | None = None
    resumed_from_epoch: int | None = None

    def attrs(self) -> dict[str, JSON]:
        peak = None
        if self.device.type == "cuda":
            peak = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return {
            "seed": self.seed,
            "wall_time_s": round(time.perf_counter() - self.started, 3),
            "epochs_run": self.epochs_run,
            "n_params": self.n_params,
            "device": str(self.device),
            "peak_gpu_mem_mb": peak,
            "best_epoch": self.best_epoch,
            "resumed_from_epoch": self.resumed_from_epoch,
        }


def _fresh_trainee(params: MLPParams, data: DeviceDataset, seed: int) -> Trainee:
    device = data.x_train.device
    torch.manual_seed(seed)
    model = build_mlp(data.n_features, data.n_classes, params).to(device)
    return Trainee(
        model=model,
        optimizer=build_optimizer(model, params),
        shuffle=shuffle_generator(device, seed),
        device=device,
    )


def _start(ctx: TrialContext, params: MLPParams, data: DeviceDataset) -> tuple[Trainee, Progress]:
    """A fresh trainee, or the one the trial's checkpoint restores."""
    trainee = _fresh_trainee(params, data, ctx.seed)
    blob = ctx.load_checkpoint()
    if blob is None:
        return trainee, Progress()
    try:
        progress = checkpoint.restore(blob, trainee)
    except CheckpointError as exc:
        logger.warning("trial %s: unusable checkpoint (%s); starting afresh", ctx.trial_id, exc)
        return _fresh_trainee(params, data, ctx.seed), Progress()
    set_hyperparameters(trainee.optimizer, params)
    return trainee, progress


def _own_progress(ctx: TrialContext, progress: Progress, epochs: int) -> Progress:
    """A pbt child's best counts from its first step: its parent's earlier best is not its own
    (unless the child has no epoch left to run, where the inherited best is all there is)."""
    start = ctx.started_from_step
    if start is None or progress.best_epoch is None or progress.best_epoch >= start:
        return progress
    if progress.next_epoch >= epochs:
        return progress
    return Progress(next_epoch=progress.next_epoch)


def _train(
    ctx: TrialContext, params: MLPParams, spec: MLPTaskSpec, record: _RunRecord
) -> TaskResult:
    """The training run; every tensor it makes is local, so an OOM can free them."""
    configure_device(ctx.device)
    data = load_dataset(spec.dataset, ctx.device)
    batch_size = min(params.batch_size, data.x_train.shape[0])
    trainee, progress = _start(ctx, params, data)
    progress = _own_progress(ctx, progress, spec.epochs)
    record.n_params = count_parameters(trainee.model)
    record.epochs_run, record.best_epoch = progress.next_epoch, progress.best_epoch
    if progress.next_epoch > 0:
        record.resumed_from_epoch = progress.next_epoch
    for epoch in range(progress.next_epoch, spec.epochs):
        stats = run_epoch(trainee.model, trainee.optimizer, data, batch_size, trainee.shuffle)
        check_finite("training loss", stats.train_loss, epoch)
        check_finite("validation loss", stats.val_loss, epoch)
        progress = progress.after_epoch(epoch, stats.val_loss)
        record.epochs_run, record.best_epoch = epoch + 1, progress.best_epoch
        if ctx.report(epoch, stats.val_loss):
            return TaskResult("pruned", stats.val_loss, epoch + 1)
        ctx.save_checkpoint(epoch, checkpoint.encode(trainee, progress))
        if ctx.stop_requested():
            return TaskResult("interrupted", None, epoch + 1)
    _save_model(ctx, trainee.model)
    return TaskResult("complete", progress.best_value, record.epochs_run)


def _save_model(ctx: TrialContext, model: torch.nn.Module) -> None:
    """The final weights as the artifact ``model``, where the server keeps artifacts."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    if ctx.save_artifact("model", buffer.getvalue()):
        logger.info("trial %s: model saved", ctx.trial_id)


class MLPClassifierTask:
    """``mlp_classifier``; stateless, so one instance may serve concurrent trials."""

    name = "mlp_classifier"

    def run(self, ctx: TrialContext) -> TaskResult:
        """Train and evaluate the MLP for ``ctx``'s trial (contract in the module docstring)."""
        params = MLPParams.parse(ctx.params)
        spec = MLPTaskSpec.parse(ctx.task)
        device = ctx.device
        record = _RunRecord(seed=ctx.seed, device=device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            return call_mapping_oom(lambda: _train(ctx, params, spec, record), device)
        finally:
            ctx.set_attrs(record.attrs())
