"""Teacher penultimate features for feature-distribution losses (KD²M).

A feature term compares the student's penultimate features with the teacher's on the same
inputs. The teacher's features come from one network, `feature_network`:

- a network teacher (deterministic, temperature, MSE/MCMI baselines) uses its network;
- a Bayesian teacher uses its *mean or MAP network*: Laplace the MAP network it was fitted
  around, IVON and mean-field VI the posterior-mean weights, MC dropout the network without
  dropout. Its predictive averages over weights, but its features are taken at one point
  of the posterior;
- temperature scaling on top of a teacher leaves the features of the teacher below;
- ensembles and exact/noisy Bayes teachers have no single network: feature terms are
  refused for them.

Without augmentation the teacher's features on the training set are computed once and
looked up by index, like its probabilities (`CachedTargets`): N × D numbers held on the
training device (50 000 × 512 float32 ≈ 100 MB for CIFAR with a ResNet). With augmentation
they are computed on every batch (`OnlineFeatures`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bayesdistill.data.labelled import LabelledData
from bayesdistill.errors import ConfigError
from bayesdistill.models import Classifier
from bayesdistill.train.batches import input_batches

FEATURE_BATCH_SIZE = 1024
"""Inputs per forward pass when computing the teacher's features on the training set."""


def feature_network(teacher: object) -> Classifier:
    """The network whose penultimate features stand for ``teacher``'s (see the module doc).

    That of the teacher it answers for, ``teacher.unwrap()`` (a tempered teacher answers for
    its base; a teacher without ``unwrap`` for itself), held as a `Classifier` in
    ``.network``; raises `ConfigError` when there is none (ensembles, cross-fitted and
    exact/noisy Bayes teachers).
    """
    unwrap = getattr(teacher, "unwrap", None)
    network = getattr(unwrap() if callable(unwrap) else teacher, "network", None)
    if isinstance(network, Classifier):
        return network
    kind = getattr(teacher, "kind", type(teacher).__name__)
    raise ConfigError(
        f"feature loss terms need the teacher's penultimate features, but a teacher of kind "
        f"'{kind}' has no single network (ensembles and exact/noisy Bayes teachers do not); "
        "use a teacher of another kind, or drop the feature terms"
    )


def check_feature_dims(student: nn.Module, teacher_network: Classifier) -> None:
    """Raise `ConfigError` unless student and teacher features have the same dimension D."""
    if not isinstance(student, Classifier):
        raise ConfigError(
            f"feature loss terms need the student's penultimate features, but the student is a "
            f"{type(student).__name__}, not a bayesdistill Classifier (with "
            "forward_with_features)"
        )
    d_student = _feature_dim(student)
    d_teacher = _feature_dim(teacher_network)
    if d_student is not None and d_teacher is not None and d_student != d_teacher:
        raise ConfigError(
            f"feature loss terms compare penultimate features, but the student's have "
            f"D = {d_student} and the teacher's D = {d_teacher}. Choose a student whose last "
            f"hidden layer has {d_teacher} units (KD²M distils ResNet34 → ResNet18, both "
            "512-d), or add a projection of your choice to the student"
        )


@torch.no_grad()
def features_in_batches(
    network: Classifier, data: Tensor | LabelledData, batch_size: int = FEATURE_BATCH_SIZE
) -> Tensor:
    """``network.features`` (eval mode) over ``data`` in chunks, ``(N, D)``: on the inputs'
    device for a tensor of inputs, on the network's device for labelled data."""
    network.eval()
    device = next(network.parameters()).device
    chunks = [network.features(x) for x in input_batches(data, device, batch_size)]
    out = torch.cat(chunks)
    return out.to(data.device) if isinstance(data, Tensor) else out


class OnlineFeatures:
    """The teacher network's features on every batch (needed when inputs are augmented)."""

    def __init__(self, network: Classifier) -> None:
        self.network = network

    @torch.no_grad()
    def __call__(self, x: Tensor, index: Tensor) -> Tensor:
        self.network.eval()
        device = next(self.network.parameters()).device
        return self.network.features(x.to(device)).to(x.device)


def _feature_dim(network: Classifier) -> int | None:
    return getattr(network.head, "in_features", None)
