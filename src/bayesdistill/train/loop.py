"""The training loop: SGD over a batch source, evaluation points, checkpoints, resume.

`fit` trains a network on *labelled data*: an in-memory `ArrayData` (batched by indexing on
the device: the fast default) or a `StreamData` (any map-style ``Dataset``, read through a
``DataLoader``), or on any ready `BatchSource`. Both data paths draw the same batch order,
so they train to the same weights. Everything the run leaves behind (``metrics.jsonl``,
``checkpoint.pt``, the progress bar) is owned by a `Recorder`; calling `fit` again with
``resume=True`` on a killed run replays the interrupted epoch with the same batch order
and random state, so it ends with exactly the weights an uninterrupted run would have.

What a step minimises is an *objective* (`bayesdistill.train.objective`): a plain loss
``(logits, teacher_probs, labels) -> scalar`` given as ``loss_fn``, or an `Objective`
that receives the batch with its runtime inputs (the fractional epoch) and may return
named terms, which are logged as ``train_loss/<name>`` (their mean since the last
evaluation point) next to ``train_loss`` (the total). Losses are summed on the device and
read once per evaluation point, not per step; a non-finite loss stops the run within
`FINITE_CHECK_STEPS` steps (`bayesdistill.train.running_loss`), before it writes a record or a checkpoint.

Teacher probabilities for a batch come from a `TargetSource` (``targets(x, index)``), or
from a `ViewSource`, which brings its own augmentation: it picks a stored augmented view
of each example, rebuilds it, and returns it with the teacher's stored probabilities.

Speed options (`Acceleration`: mixed precision, channels-last, compilation) and
distributed training (`bayesdistill.train.distributed`: one rank's part of every global
batch, DDP gradient averaging) are applied here, around the same step. With ``compile:
step`` the step itself (forward, loss, backward, update) is compiled as a whole
(`bayesdistill.train.compiled`), where it can be captured.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from bayesdistill.data.arrays import ArrayData
from bayesdistill.data.augment import Augmentation
from bayesdistill.data.labelled import StreamData
from bayesdistill.losses import unchecked
from bayesdistill.seeding import derive_seed, generator, seeded
from bayesdistill.train import distributed
from bayesdistill.train.accel import DEFAULT_ACCELERATION, Acceleration
from bayesdistill.train.batches import BatchSource, make_batches
from bayesdistill.train.compiled import StepResult, compiled_step
from bayesdistill.train.objective import LogitLoss, LossFn, Objective, StepInputs
from bayesdistill.train.optim import build_optimizer, build_scheduler
from bayesdistill.train.recorder import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    Recorder,
    TrainingState,
    rng_state,
    set_rng_state,
)
from bayesdistill.train.running_loss import (
    DivergenceAlarm,
    RunningLoss,
    check_losses,
    checked_mean_losses,
)
from bayesdistill.train.settings import TrainSettings
from bayesdistill.train.targets import TargetSource, ViewSource

__all__ = ["CHECKPOINT_NAME", "METRICS_NAME", "FitResult", "fit", "sgd_step"]

AUGMENT_STREAM = 1
"""Seed stream of the per-epoch augmentation generator: generator(seed, epoch, 1)."""
RANK_STREAM = 7
"""Rank r > 0 of a distributed run seeds its global generator with derive_seed(seed, 7, r)."""
Evaluator = Callable[[nn.Module], Mapping[str, float]]


class StepFn(Protocol):
    def __call__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, compute_loss: Callable[[], Tensor]
    ) -> Tensor:
        """Do one optimisation step; return the (detached) loss."""
        ...


def sgd_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    compute_loss: Callable[[], Tensor],
    max_norm: float | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> Tensor:
    """zero_grad → loss → backward → (clip the gradient to L2 norm ≤ ``max_norm``) → step.

    With a ``scaler`` (fp16) the loss is scaled before the backward pass and the gradient
    unscaled before clipping; steps with inf/NaN gradients are skipped by the scaler.
    """
    optimizer.zero_grad(set_to_none=True)
    loss = compute_loss()
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    return loss.detach()


def clipped_step(max_norm: float) -> StepFn:
    """`sgd_step` with the gradient rescaled to L2 norm ≤ ``max_norm`` before the update."""
    return functools.partial(sgd_step, max_norm=max_norm)


@dataclass
class FitResult:
    """The trained model and its learning curve (the records of ``metrics.jsonl``)."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_epoch: int = 0

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def fit(
    model: nn.Module,
    train: ArrayData | StreamData | BatchSource,
    *,
    loss_fn: LossFn | None = None,
    objective: Objective | None = None,
    settings: TrainSettings,
    seed: int,
    targets: TargetSource | ViewSource | None = None,
    evaluate: Evaluator | None = None,
    augment: Augmentation | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    optimizer: torch.optim.Optimizer | None = None,
    step: StepFn = sgd_step,
    progress: bool = True,
    description: str = "train",
    fingerprint_extra: Mapping[str, Any] | None = None,
    accel: Acceleration = DEFAULT_ACCELERATION,
) -> FitResult:
    """Train ``model`` in place on ``train`` and return it with its learning curve.

    Args:
        model: the network; its parameters' device is used for everything.
        train: the training set: `ArrayData` (moved to the model's device once),
            `StreamData` (read batch by batch through a DataLoader), or a batch source.
        loss_fn: ``loss_fn(logits, teacher_probs | None, labels) -> scalar``.
        objective: instead of ``loss_fn``, ``objective(model, StepInputs) -> (loss, terms)``
            (e.g. a `WeightedSum`); give exactly one of the two.
        settings: epochs, batch size (the global batch of a distributed run), optimiser
            and schedule.
        seed: seeds the batch order, augmentation and layers that draw random numbers.
        targets: teacher probabilities per batch (None for one-hot training): a
            `TargetSource`, or a `ViewSource` (stored augmented views; then no ``augment``).
        evaluate: called at each evaluation point with the (unwrapped) model; its metrics
            are logged. In a distributed run rank 0 evaluates and shares the result.
        augment: batch augmentation, applied before the teacher is asked.
        run_dir: where ``metrics.jsonl`` and ``checkpoint.pt`` go (None: keep nothing).
        resume: continue from ``run_dir/checkpoint.pt`` if it exists.
        optimizer: a ready optimiser (e.g. IVON); default: built from ``settings``.
        step: how one optimisation step is taken (e.g. `ivon_step`); the default clips
            gradients when ``settings.grad_clip_norm`` is set.
        progress: show a progress bar (on an interactive terminal).
        description: label of the progress bar.
        fingerprint_extra: more facts that must match for a checkpoint to be resumed.
        accel: mixed precision, channels-last, compilation (`Acceleration`).
    """
    if (loss_fn is None) == (objective is None):
        raise TypeError("fit needs exactly one of loss_fn and objective")
    # a bayesdistill loss runs unchecked: labels were validated with the data, and teacher
    # probabilities by `distill` (a TargetSource of one's own is trusted as given)
    objective = objective if objective is not None else LogitLoss(unchecked(loss_fn))  # type: ignore[arg-type]
    device = next(model.parameters()).device
    accel.check(device)
    views = targets if isinstance(targets, ViewSource) else None
    if views is not None and augment is not None:
        raise TypeError(
            "a ViewSource rebuilds its own stored augmented views; give no augment with it"
        )
    shard = distributed.current_shard()
    batches = _batch_source(train, settings, seed, device, shard)
    steps_per_epoch = len(batches)
    if steps_per_epoch == 0:
        raise ValueError(f"{description}: the training data gives no batch")
    optimizer = optimizer or build_optimizer(model.parameters(), settings)
    scheduler = build_scheduler(optimizer, settings, steps_per_epoch)
    scaler = accel.grad_scaler(device)
    own_step = None if step is sgd_step else step
    if scaler is not None and step is not sgd_step:
        raise TypeError(
            f"{description}: precision 'fp16' needs loss scaling, which this training's own "
            "step function does not do; use precision 'bf16' for it"
        )
    if step is sgd_step and (settings.grad_clip_norm is not None or scaler is not None):
        step = functools.partial(sgd_step, max_norm=settings.grad_clip_norm, scaler=scaler)
    accel.prepare_model(model)
    net = model
    if shard is not None:
        net = distributed.wrap(model, device, sync_batchnorm=accel.sync_batchnorm)
    net = accel.compiled(net)

    state = TrainingState(model, optimizer, scheduler, scaler)
    recorder = Recorder(
        run_dir,
        fingerprint=_fingerprint(model, train, settings, seed, optimizer, accel, fingerprint_extra),
        epochs=settings.epochs,
        description=description,
        progress=progress,
        writer=distributed.is_writer(),
    )
    rank = 0 if shard is None else shard.rank
    start_epoch, saved_rng = recorder.start(
        state, resume=resume, steps_per_epoch=steps_per_epoch, rank=rank
    )

    def eager_step(inputs: StepInputs, weight: float) -> StepResult:
        seen: list[Mapping[str, Tensor]] = []

        def compute_loss() -> Tensor:
            with accel.autocast(device):
                loss, terms = objective(net, inputs)
            if terms:
                seen.append(terms)
            # weighted: the mean over ranks of the weighted losses is the global batch's
            # mean loss (`Batch.weight`), so the logged curve is the global one
            return loss if weight == 1.0 else loss * weight

        return step(net, optimizer, compute_loss), seen

    # built after a resume has loaded the optimiser (whose learning rates it makes tensors)
    whole_step = compiled_step(
        net,
        optimizer,
        objective,
        accel=accel,
        device=device,
        max_norm=settings.grad_clip_norm,
        own_step=own_step,
        grad_scaler=scaler is not None,
        distributed=shard is not None,
        description=description,
    )
    take_step = whole_step or eager_step
    eval_points = _eval_points(steps_per_epoch, settings.evals_per_epoch)
    rank_seed = seed if rank == 0 else derive_seed(seed, RANK_STREAM, rank)
    running, alarm = RunningLoss(device), DivergenceAlarm(description, settings.lr)
    try:
        with seeded(rank_seed, device):
            if saved_rng is not None:
                set_rng_state(saved_rng, device)
            for epoch in range(start_epoch, settings.epochs):
                model.train()
                aug_gen = (
                    generator(seed, epoch, AUGMENT_STREAM)
                    if augment is not None or views is not None
                    else None
                )
                tic = time.perf_counter()
                running.restart()
                for b, batch in enumerate(batches.epoch(epoch)):
                    if views is not None:
                        x, soft = views.draw(batch.x, batch.index, aug_gen)  # type: ignore[arg-type]
                    else:
                        x = augment(batch.x, aug_gen) if augment is not None else batch.x  # type: ignore[arg-type]
                        soft = None
                    x = accel.prepare_input(x)
                    if views is None and targets is not None:
                        with accel.teacher_inference(device):
                            soft = targets(x, batch.index)  # type: ignore[operator]
                    inputs = StepInputs(x, batch.y, batch.index, soft, epoch + b / steps_per_epoch)
                    running.add(*take_step(inputs, batch.weight), b)
                    scheduler.step()
                    if running.check_due:
                        check_losses(running, alarm, epoch)
                    if b + 1 in eval_points:
                        losses = checked_mean_losses(running, model, device, alarm, epoch, b)
                        record = {
                            "epoch": epoch + eval_points[b + 1],
                            "step": epoch * steps_per_epoch + b + 1,
                            # float(): a compiled step makes the learning rate a tensor
                            "lr": float(optimizer.param_groups[0]["lr"]),
                            **losses,
                        }
                        if evaluate is not None:
                            record.update(_evaluate(evaluate, model))
                            model.train()
                        record["seconds"] = time.perf_counter() - tic
                        running.restart()
                        recorder.record(record)
                if running.count:  # never: an epoch's last batch is an evaluation point
                    checked_mean_losses(running, model, device, alarm, epoch, b)
                recorder.end_epoch(epoch, state, distributed.all_gather(rng_state(device)))
    finally:
        recorder.close()
        if whole_step is not None:
            whole_step.release()
    model.eval()
    return FitResult(model, recorder.history, start_epoch)


def _batch_source(
    train: ArrayData | StreamData | BatchSource,
    settings: TrainSettings,
    seed: int,
    device: torch.device,
    shard: distributed.Shard | None,
) -> BatchSource:
    if isinstance(train, (ArrayData, StreamData)):
        return make_batches(
            train,
            settings.batch_size,
            seed=seed,
            device=device,
            drop_last=settings.drop_last,
            shard=shard,
        )
    if shard is not None:
        raise TypeError(
            "a distributed run shards the batches it makes itself; give fit ArrayData or "
            "StreamData, not a ready batch source"
        )
    return train


def _evaluate(evaluate: Evaluator, model: nn.Module) -> Mapping[str, float]:
    """``evaluate(model)`` on rank 0, shared with every rank."""
    metrics = None
    if distributed.is_writer():
        with torch.no_grad():
            metrics = dict(evaluate(model))
    return distributed.broadcast(metrics)


def _eval_points(steps_per_epoch: int, evals_per_epoch: int) -> dict[int, float]:
    """Batch number (1-based) → fraction of the epoch, for each evaluation point."""
    k = min(evals_per_epoch, steps_per_epoch)
    points = {}
    for j in range(1, k + 1):
        points[math.ceil(j * steps_per_epoch / k)] = j / k
    return points


def _fingerprint(
    model: nn.Module,
    train: ArrayData | StreamData | BatchSource,
    settings: TrainSettings,
    seed: int,
    optimizer: torch.optim.Optimizer,
    accel: Acceleration,
    extra: Mapping[str, Any] | None,
) -> str:
    facts = {
        "settings": {k: str(v) for k, v in asdict(settings).items()},
        "seed": seed,
        "n_train": len(train),  # type: ignore[arg-type]
        "shapes": [list(p.shape) for p in model.parameters()],
        "optimizer": type(optimizer).__name__,
        "extra": {k: str(v) for k, v in (extra or {}).items()},
    }
    if accel != DEFAULT_ACCELERATION:
        facts["accel"] = accel.facts()
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]
