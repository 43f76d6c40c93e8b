"""The MCMI teacher, a non-Bayesian baseline of Morad et al. (2026, REFERENCE §1) trained *to
estimate the Bayes class probabilities* (Ye et al., ICLR 2024, "Bayes Conditional
Distribution Estimation for Knowledge Distillation Based on Conditional Mutual Information").

The trained network is fine-tuned to maximise the log-likelihood *and* the conditional
mutual information I(X; Ŷ | Y) = E_y E_{x|y} KL(p(·|x) ‖ Q_y), with the class centroid
Q_y = E_{x|y}[p(·|x)]. The loss is L = CE − λ · (1/B) Σ_b KL(p(·|x_b) ‖ Q_{y_b}), with Q
recomputed on the whole training set (network in eval mode, no gradient) at the start of
every fine-tuning epoch and treated as a constant. What is left out: their per-batch
exponential-moving-average centroid updates from a class-balanced sample, and any λ tuning.
Note that the public code of Morad et al. (``scripts/train_teacher_MCMI.py``) *adds* λ·KL
(minimising the CMI) with centroids fixed before fine-tuning; a negative ``cmi_weight``
gives that sign.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bayesdistill.data.labelled import LabelledData
from bayesdistill.losses.response import PROB_FLOOR
from bayesdistill.models import Classifier
from bayesdistill.teachers.base import network_from_state, network_state
from bayesdistill.teachers.context import TEACHERS, TeacherContext
from bayesdistill.teachers.deterministic import DeterministicTeacher
from bayesdistill.train.batches import iterate, num_batches
from bayesdistill.train.loop import FitResult, fit
from bayesdistill.train.run_options import DEFAULT_RUN, RunOptions
from bayesdistill.train.settings import OptimizerName, TrainSettings

CENTROID_BATCH_SIZE = 2048
MCMI_DEFAULT_EPOCHS = 5
MCMI_DEFAULT_LR_FACTOR = 0.1
"""MCMI fine-tunes at this fraction of the teacher network's learning rate by default."""


@torch.no_grad()
def class_centroids(network: nn.Module, data: LabelledData, num_classes: int) -> Tensor:
    """Q ``(C, C)``: row y is the mean softmax output over the examples labelled y.

    A class without examples gets the uniform distribution. The network is evaluated in
    eval mode; its mode is restored afterwards.
    """
    was_training = network.training
    network.eval()
    device = next(network.parameters()).device
    sums = torch.zeros(num_classes, num_classes, device=device)
    counts = torch.zeros(num_classes, device=device)
    for x, y in iterate(data, device, CENTROID_BATCH_SIZE):
        sums.index_add_(0, y, torch.softmax(network(x), dim=1))
        counts.index_add_(0, y, torch.ones_like(y, dtype=counts.dtype))
    network.train(was_training)
    empty = counts == 0
    sums[empty] = 1.0
    counts[empty] = float(num_classes)
    return sums / counts[:, None]


def conditional_mutual_information(logits: Tensor, labels: Tensor, centroids: Tensor) -> Tensor:
    """Batch estimate of I(X; Ŷ | Y): (1/B) Σ_b KL(softmax(z_b) ‖ Q_{y_b}) (Ye et al. 2024)."""
    log_p = torch.log_softmax(logits, dim=1)
    log_q = centroids[labels].clamp_min(PROB_FLOOR).log()
    return (log_p.exp() * (log_p - log_q)).sum(1).mean()


class MCMITeacher(DeterministicTeacher):
    """softmax(f(x)) of a network fine-tuned with the MCMI objective (Ye et al. 2024)."""

    kind = "mcmi"

    def __init__(self, network: Classifier, *, cmi_weight: float) -> None:
        super().__init__(network)
        self.cmi_weight = float(cmi_weight)

    def payload(self) -> dict[str, Any]:
        return {"network": network_state(self.network), "cmi_weight": self.cmi_weight}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> MCMITeacher:
        return cls(network_from_state(payload["network"]), cmi_weight=payload["cmi_weight"])

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "cmi_weight": self.cmi_weight}


class _CentroidModel(nn.Module):
    """The network plus class centroids that are refreshed at the start of every epoch.

    Centroids and the step count live in the module's state, so a resumed run continues
    with the centroids it had.
    """

    def __init__(self, network: Classifier, data: LabelledData, steps_per_epoch: int) -> None:
        super().__init__()
        self.network = network
        self.data = data
        self.steps_per_epoch = steps_per_epoch
        c = network.num_classes
        # beside the network: `fit` trains where the parameters are and never moves the
        # model; the loss indexes the centroids with the batch's labels (on that device)
        device = next(network.parameters()).device
        self.register_buffer("centroids", torch.full((c, c), 1.0 / c, device=device))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long, device=device))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            if int(self.steps_done) % self.steps_per_epoch == 0:
                self.centroids.copy_(
                    class_centroids(self.network, self.data, self.network.num_classes)
                )
            self.steps_done += 1
        return self.network(x)


def finetune_mcmi(
    network: Classifier,
    train: LabelledData,
    *,
    settings: TrainSettings,
    seed: int,
    cmi_weight: float = 0.1,
    run: RunOptions = DEFAULT_RUN,
) -> tuple[MCMITeacher, FitResult]:
    """Fine-tune a *copy* of ``network`` with CE − λ·CMI; return the teacher.

    Args:
        network: the trained network (not modified).
        train: the training set (centroids and fine-tuning).
        settings: the fine-tuning run (a few epochs at a small lr).
        seed: seeds the batch order.
        cmi_weight: λ; positive maximises the CMI (Ye et al.), negative minimises it.
        run: how the fine-tuning runs (evaluation, augmentation, run folder, resume,
            progress, speed: `RunOptions`).
    """
    network = copy.deepcopy(network)
    steps_per_epoch = num_batches(len(train), settings.batch_size, settings.drop_last)
    device = next(network.parameters()).device
    model = _CentroidModel(network, train.to(device), steps_per_epoch)

    def loss_fn(logits: Tensor, _teacher: Tensor | None, y: Tensor) -> Tensor:
        cmi = conditional_mutual_information(logits, y, model.centroids)
        return F.cross_entropy(logits, y) - cmi_weight * cmi

    result = fit(
        model,
        train,
        loss_fn=loss_fn,
        settings=settings,
        seed=seed,
        **run.fit_options(),
        description="mcmi teacher",
        fingerprint_extra={"cmi_weight": cmi_weight},
    )
    return MCMITeacher(network.eval(), cmi_weight=cmi_weight), result


@TEACHERS.register(
    "mcmi", saves=MCMITeacher, needs_network=True, learns_from_data=True, bayesian=False
)
def build_mcmi(
    context: TeacherContext,
    *,
    cmi_weight: float = 0.1,
    epochs: int = MCMI_DEFAULT_EPOCHS,
    lr: float | None = None,
    batch_size: int | None = None,
    optimizer: OptimizerName | None = None,
) -> MCMITeacher:
    """The trained network fine-tuned with CE − λ·CMI (MCMI, Ye et al. 2024).

    ``lr`` defaults to a tenth of the teacher network's; centroids are refreshed every
    epoch. A negative ``cmi_weight`` minimises the CMI instead.
    """
    base = context.train_settings or TrainSettings()
    settings = context.settings_with(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr if lr is not None else base.lr * MCMI_DEFAULT_LR_FACTOR,
        optimizer=optimizer,
    )
    teacher, _ = finetune_mcmi(
        context.need_network("mcmi"),
        context.splits.train,
        settings=settings,
        seed=context.seed,
        cmi_weight=cmi_weight,
        run=context.run_options(),
    )
    return teacher
