"""Shared steps of the runners: data from a config, devices, evaluation, run folders."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bayesdistill.config.schema import (
    DEFAULT_TEST_FRACTION,
    AugmentConfig,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
)
from bayesdistill.data import AUGMENTATIONS, DATASETS, DataSplits, make_splits
from bayesdistill.data.augment import Augmentation, Compose
from bayesdistill.data.labelled import LabelledData, LoaderOptions
from bayesdistill.data.raw import RawStream
from bayesdistill.devices import AUTO, check_device
from bayesdistill.errors import ConfigError
from bayesdistill.io import load_torch, save_torch
from bayesdistill.metrics import classification_metrics, fluctuation
from bayesdistill.models import Classifier, create_model
from bayesdistill.seeding import derive_seed, seeded
from bayesdistill.teachers.base import network_from_state, network_state
from bayesdistill.train.batches import input_batches

log = logging.getLogger("bayesdistill")

EVAL_BATCH_SIZE = 2048
NETWORK_FORMAT = "bayesdistill.network"
CURVE_KEY = "test_accuracy"
"""The logged metric whose learning curve a summary's ``fluctuation`` measures."""

# Distinct streams derived from a run seed, so that changing one part of a study never
# changes the random numbers of another.
TEACHER_INIT_STREAM = 1
STUDENT_INIT_STREAM = 2
STUDENT_SUBSET_STREAM = 3
STUDENT_BATCH_STREAM = 4
STUDENT_VIEW_STREAM = 5
TEACHER_TRAIN_STREAM = 6
"""The teacher network's training (batch order, dropout, augmentation). Runs recorded
before it existed trained the network on `TEACHER_INIT_STREAM`, which tied dropout's
randomness to the initial weights; they keep doing so when resumed (run.json's
``teacher_train_stream``, `bayesdistill.runner.identity.LATER_FACTS`)."""


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA if available, else CPU; otherwise the named device (checked).

    In a distributed run on GPUs, ``auto`` and ``cuda`` mean this rank's own GPU.
    """
    if check_device(name) == AUTO:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device '{name}' was asked for, but CUDA is not available here; use 'cpu'"
            )
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        elif device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device '{name}' does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s), cuda:0 … "
                f"cuda:{torch.cuda.device_count() - 1}"
            )
    return device


def load_data(config: DataConfig, loader: LoaderOptions | None = None) -> DataSplits:
    """Generate or read the dataset and split it as configured. A streamed dataset
    (``image_folder``, ``arrays_on_disk``) gives `StreamData` splits read with ``loader``.

    ``config.test_fraction`` applies to datasets without a test split of their own
    (default `DEFAULT_TEST_FRACTION`); given for one that has its own, it is refused
    (`ConfigError`) rather than silently ignored.
    """
    raw = DATASETS.build(config.name, **config.options)
    own_test = raw.test if isinstance(raw, RawStream) else raw.y_test
    if own_test is not None and config.test_fraction is not None:
        raise ConfigError(
            f"data.test_fraction={config.test_fraction} does not apply: dataset "
            f"'{config.name}' has a test split of its own ({len(own_test)} examples), which "
            "is the test set; remove data.test_fraction (data.val_fraction still applies)"
        )
    test_fraction = DEFAULT_TEST_FRACTION if config.test_fraction is None else config.test_fraction
    return make_splits(
        raw,
        val_fraction=config.val_fraction,
        test_fraction=test_fraction,
        seed=config.split_seed,
        standardize=config.standardize,
        loader=loader,
    )


def build_augment(configs: list[AugmentConfig]) -> Augmentation | None:
    """The configured batch augmentations in order, or None when there are none."""
    if not configs:
        return None
    return Compose([AUGMENTATIONS.build(a.name, **a.options) for a in configs])


def init_network(
    model: ModelConfig, splits: DataSplits, seed: int, stream: int, device: torch.device
) -> Classifier:
    """A freshly initialised network; the same (seed, stream) gives the same weights."""
    with seeded(derive_seed(seed, stream)):
        network = create_model(model.name, splits.input_shape, splits.num_classes, **model.options)
    return network.to(device)


@torch.no_grad()
def predict_network(
    network: nn.Module, data: Tensor | LabelledData, batch_size: int = EVAL_BATCH_SIZE
) -> Tensor:
    """softmax of the network's logits over ``data`` (inputs, or labelled data) in
    chunks, ``(N, C)``, on the network's device."""
    network.eval()
    device = next(network.parameters()).device
    return torch.cat(
        [torch.softmax(network(x), 1).float() for x in input_batches(data, device, batch_size)]
    )


def split_metrics(probs: Tensor, data: LabelledData, prefix: str) -> dict[str, float]:
    metrics = classification_metrics(
        probs.cpu(), data.y.cpu(), None if data.bcp is None else data.bcp.cpu()
    )
    return {f"{prefix}_{k}": v for k, v in metrics.items()}


def curve_fluctuation(records: list[dict[str, Any]], key: str = CURVE_KEY) -> float:
    """Fluctuation (percentage points) of a logged accuracy curve; NaN if too short."""
    values = [100.0 * r[key] for r in records if key in r]
    return fluctuation(values)


def network_evaluator(splits: DataSplits) -> Callable[[nn.Module], Mapping[str, float]]:
    """Validation and test metrics of a network's softmax (logged at evaluation points)."""

    def evaluate(network: nn.Module) -> dict[str, float]:
        out = split_metrics(predict_network(network, splits.val), splits.val, "val")
        out.update(split_metrics(predict_network(network, splits.test), splits.test, "test"))
        return out

    return evaluate


def save_network(path: Path, network: Classifier) -> None:
    save_torch(path, {"format": NETWORK_FORMAT, "version": 1, **network_state(network)})


def load_network(path: Path, device: torch.device | str = "cpu") -> Classifier:
    state = load_torch(path, what="network", expected_format=NETWORK_FORMAT)
    return network_from_state(state).to(device)


def experiment_summary(config: ExperimentConfig, splits: DataSplits) -> dict[str, Any]:
    return {
        "dataset": splits.name,
        "num_classes": splits.num_classes,
        "input_shape": list(splits.input_shape),
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "n_test": len(splits.test),
        "has_bcp": splits.has_bcp,
        "seeds": config.seeds,
    }
