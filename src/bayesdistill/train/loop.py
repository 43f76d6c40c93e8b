"""The training loop: SGD on in-memory data, per-epoch metrics, atomic checkpoints, resume.

A run folder holds ``metrics.jsonl`` (one record per evaluation point) and
``checkpoint.pt`` (model, optimiser, scheduler, RNG state; rewritten atomically at the end
of every epoch). Calling `fit` again with ``resume=True`` on a killed run replays the
interrupted epoch with the same batch order and random state, so it ends with exactly the
weights an uninterrupted run would have.

What a step minimises is an *objective* (`bayesdistill.train.objective`): a plain loss
``(logits, teacher_probs, labels) -> scalar`` given as ``loss_fn``, or an `Objective`
that receives the batch with its runtime inputs (the fractional epoch) and may return
named terms, which are logged as ``train_loss/<name>`` (their mean since the last
evaluation point) next to ``train_loss`` (the total).
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
from tqdm.auto import tqdm

from bayesdistill.data.augment import Augmentation
from bayesdistill.data.base import ArrayData
from bayesdistill.errors import CheckpointError
from bayesdistill.io import JsonLines, load_torch, remove_stale_temporaries, save_torch
from bayesdistill.seeding import generator, seeded
from bayesdistill.train.batches import TensorBatches
from bayesdistill.train.objective import LogitLoss, LossFn, Objective, StepInputs
from bayesdistill.train.optim import build_optimizer, build_scheduler
from bayesdistill.train.settings import TrainSettings
from bayesdistill.train.targets import TargetSource

CHECKPOINT_FORMAT = "bayesdistill.checkpoint"
CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
SHOWN_IN_PROGRESS_BAR = ("train_loss", "val_accuracy", "test_accuracy")
RESUMABLE_OPTIMIZER_ATTRS = ("current_step",)
"""Optimiser attributes missing from ``state_dict()`` (IVON's step counter) but saved."""
TERM_PREFIX = "train_loss/"
"""Metrics key prefix of the named loss terms of an objective."""

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
) -> Tensor:
    """zero_grad → loss → backward → (clip the gradient to L2 norm ≤ ``max_norm``) → step."""
    optimizer.zero_grad(set_to_none=True)
    loss = compute_loss()
    loss.backward()
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
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
    train: ArrayData,
    *,
    loss_fn: LossFn | None = None,
    objective: Objective | None = None,
    settings: TrainSettings,
    seed: int,
    targets: TargetSource | None = None,
    evaluate: Evaluator | None = None,
    augment: Augmentation | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    optimizer: torch.optim.Optimizer | None = None,
    step: StepFn = sgd_step,
    progress: bool = True,
    description: str = "train",
    fingerprint_extra: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` in place on ``train`` and return it with its learning curve.

    Args:
        model: the network; its parameters' device is used for everything.
        train: the training set (moved to the model's device once).
        loss_fn: ``loss_fn(logits, teacher_probs | None, labels) -> scalar``.
        objective: instead of ``loss_fn``, ``objective(model, StepInputs) -> (loss, terms)``
            (e.g. a `WeightedSum`); give exactly one of the two.
        settings: epochs, batch size, optimiser and schedule.
        seed: seeds the batch order, augmentation and layers that draw random numbers.
        targets: teacher probabilities per batch (None for one-hot training).
        evaluate: called at each evaluation point; its metrics are logged.
        augment: batch augmentation, applied before the teacher is asked.
        run_dir: where ``metrics.jsonl`` and ``checkpoint.pt`` go (None: keep nothing).
        resume: continue from ``run_dir/checkpoint.pt`` if it exists.
        optimizer: a ready optimiser (e.g. IVON); default: built from ``settings``.
        step: how one optimisation step is taken (e.g. `ivon_step`); the default clips
            gradients when ``settings.grad_clip_norm`` is set.
        progress: show a progress bar.
        description: label of the progress bar.
        fingerprint_extra: more facts that must match for a checkpoint to be resumed.
    """
    if (loss_fn is None) == (objective is None):
        raise TypeError("fit needs exactly one of loss_fn and objective")
    objective = objective if objective is not None else LogitLoss(loss_fn)  # type: ignore[arg-type]
    device = next(model.parameters()).device
    train = train.to(device)
    batches = TensorBatches(train, settings.batch_size, seed=seed, drop_last=settings.drop_last)
    steps_per_epoch = len(batches)
    optimizer = optimizer or build_optimizer(model.parameters(), settings)
    scheduler = build_scheduler(optimizer, settings, steps_per_epoch)
    if settings.grad_clip_norm is not None and step is sgd_step:
        step = clipped_step(settings.grad_clip_norm)
    fingerprint = _fingerprint(model, train, settings, seed, optimizer, fingerprint_extra)

    run = Path(run_dir) if run_dir is not None else None
    log = JsonLines(run / METRICS_NAME) if run is not None else None
    start_epoch, rng_state = 0, None
    if run is not None:
        run.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(run)
        ckpt_path = run / CHECKPOINT_NAME
        if resume and ckpt_path.exists():
            start_epoch, rng_state = _restore(ckpt_path, fingerprint, model, optimizer, scheduler)
            last_step = start_epoch * steps_per_epoch
            log.truncate(lambda r: r["step"] <= last_step)  # type: ignore[union-attr]
        else:
            log.truncate(lambda r: False)  # type: ignore[union-attr]
    history = log.read() if log is not None else []

    eval_points = _eval_points(steps_per_epoch, settings.evals_per_epoch)
    bar = tqdm(
        total=settings.epochs,
        initial=start_epoch,
        desc=description,
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
    )
    with seeded(seed, device):
        if rng_state is not None:
            _set_rng_state(rng_state, device)
        for epoch in range(start_epoch, settings.epochs):
            model.train()
            aug_gen = generator(seed, epoch, 1) if augment is not None else None
            tic, running, count = time.perf_counter(), 0.0, 0
            running_terms: dict[str, float] = {}
            for b, batch in enumerate(batches.epoch(epoch)):
                x = augment(batch.x, aug_gen) if augment is not None else batch.x
                soft = targets(x, batch.index) if targets is not None else None
                inputs = StepInputs(x, batch.y, batch.index, soft, epoch + b / steps_per_epoch)
                step_terms: list[Mapping[str, Tensor]] = []

                def compute_loss(
                    inputs: StepInputs = inputs, seen: list[Mapping[str, Tensor]] = step_terms
                ) -> Tensor:
                    loss, terms = objective(model, inputs)
                    if terms:
                        seen.append(terms)
                    return loss

                loss = float(step(model, optimizer, compute_loss))
                scheduler.step()
                running += loss
                count += 1
                if step_terms:
                    _accumulate(running_terms, step_terms)
                if not math.isfinite(loss):
                    raise FloatingPointError(
                        f"{description}: loss became {loss} at epoch {epoch}, batch {b}; "
                        f"lower the learning rate (lr={settings.lr}) or check the data"
                    )
                if b + 1 in eval_points:
                    record = {
                        "epoch": epoch + eval_points[b + 1],
                        "step": epoch * steps_per_epoch + b + 1,
                        "lr": optimizer.param_groups[0]["lr"],
                        "train_loss": running / count,
                    }
                    for name, total in running_terms.items():
                        record[TERM_PREFIX + name] = total / count
                    if evaluate is not None:
                        with torch.no_grad():
                            record.update(evaluate(model))
                        model.train()
                    record["seconds"] = time.perf_counter() - tic
                    running, count = 0.0, 0
                    running_terms = {}
                    history.append(record)
                    if log is not None:
                        log.append(record)
            if run is not None:
                _save(
                    run / CHECKPOINT_NAME,
                    fingerprint,
                    epoch + 1,
                    model,
                    optimizer,
                    scheduler,
                    device,
                )
            bar.update(1)
            if history:
                bar.set_postfix(
                    {k: f"{v:.3f}" for k, v in history[-1].items() if k in SHOWN_IN_PROGRESS_BAR}
                )
    bar.close()
    model.eval()
    return FitResult(model, history, start_epoch)


def _accumulate(running: dict[str, float], step_terms: list[Mapping[str, Tensor]]) -> None:
    """Add one step's term values to ``running``, averaged over the step's loss
    evaluations (a step function such as IVON's may make several). Summed as Python floats
    like ``train_loss``; the step has synchronised already, so reading them costs no wait."""
    for name in step_terms[0]:
        running[name] = running.get(name, 0.0) + sum(
            float(terms[name]) for terms in step_terms
        ) / len(step_terms)


def _eval_points(steps_per_epoch: int, evals_per_epoch: int) -> dict[int, float]:
    """Batch number (1-based) → fraction of the epoch, for each evaluation point."""
    k = min(evals_per_epoch, steps_per_epoch)
    points = {}
    for j in range(1, k + 1):
        points[math.ceil(j * steps_per_epoch / k)] = j / k
    return points


def _fingerprint(
    model: nn.Module,
    train: ArrayData,
    settings: TrainSettings,
    seed: int,
    optimizer: torch.optim.Optimizer,
    extra: Mapping[str, Any] | None,
) -> str:
    facts = {
        "settings": {k: str(v) for k, v in asdict(settings).items()},
        "seed": seed,
        "n_train": len(train),
        "shapes": [list(p.shape) for p in model.parameters()],
        "optimizer": type(optimizer).__name__,
        "extra": {k: str(v) for k, v in (extra or {}).items()},
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def _rng_state(device: torch.device) -> dict[str, Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _save(
    path: Path,
    fingerprint: str,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
) -> None:
    # The lr factor is rebuilt from the settings; only the step counter needs saving.
    scheduler_state = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    scheduler_state["lr_lambdas"] = [None]
    save_torch(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "fingerprint": fingerprint,
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "optimizer_attrs": {
                a: getattr(optimizer, a) for a in RESUMABLE_OPTIMIZER_ATTRS if hasattr(optimizer, a)
            },
            "scheduler": scheduler_state,
            "rng": _rng_state(device),
        },
    )


def _restore(
    path: Path,
    fingerprint: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[int, dict[str, Tensor]]:
    device = next(model.parameters()).device
    state = load_torch(path, what="training checkpoint", expected_format=CHECKPOINT_FORMAT)
    if state.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"checkpoint '{path}' was written by a run with other settings, data or model "
            f"(fingerprint {state.get('fingerprint')} ≠ {fingerprint}); resume with the same "
            "config, or delete the folder / choose another output folder to start afresh"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    for name, value in state["optimizer_attrs"].items():
        setattr(optimizer, name, value)
    _move_optimizer_tensors(optimizer, device)
    scheduler.load_state_dict(state["scheduler"])
    return int(state["epoch"]), state["rng"]


def _move_optimizer_tensors(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    # IVON keeps its posterior (hess, momentum) in param_groups, which load_state_dict
    # does not move to the parameters' device.
    for group in optimizer.param_groups:
        for key, value in group.items():
            if isinstance(value, Tensor) and key != "params":
                group[key] = value.to(device)
