"""Shared fixtures: tiny datasets and networks that train in well under a second."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bayesdistill.data import DataSplits, gaussian_mixture, make_splits
from bayesdistill.losses import onehot_ce
from bayesdistill.models import Classifier, create_model
from bayesdistill.seeding import seeded
from bayesdistill.train import TrainSettings, fit
from tests.installed import InstalledCommand, build_wheel, install


@pytest.fixture(scope="session")
def tiny_splits() -> DataSplits:
    """3-class, 4-dimensional Gaussian mixture with exact BCPs; 300 examples."""
    raw = gaussian_mixture(num_classes=3, dim=4, num_samples=300, seed=1)
    return make_splits(raw, val_fraction=0.2, test_fraction=0.2, seed=0)


def make_mlp(splits: DataSplits, seed: int = 0, hidden: tuple[int, ...] = (16,)) -> Classifier:
    with seeded(seed):
        return create_model("mlp", splits.input_shape, splits.num_classes, hidden=hidden)


def train_mlp(splits: DataSplits, epochs: int) -> Classifier:
    """``make_mlp(splits)`` trained on ``splits.train`` by one-hot SGD (batch 32, lr 0.1)."""
    settings = TrainSettings(epochs=epochs, batch_size=32, lr=0.1)
    result = fit(
        make_mlp(splits),
        splits.train,
        loss_fn=onehot_ce,
        settings=settings,
        seed=0,
        progress=False,
    )
    return result.model


@pytest.fixture(scope="session")
def trained_mlp(tiny_splits: DataSplits) -> Classifier:
    """An MLP trained for a few epochs on ``tiny_splits`` (do not modify it in tests)."""
    return train_mlp(tiny_splits, epochs=5)


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def interrupt_after(epochs: int, run) -> None:
    """Run ``run()`` but stop it (as Ctrl-C would) when it starts epoch ``epochs``."""
    from bayesdistill.train.batches import TensorBatches

    original = TensorBatches.epoch

    def stop_at(self, epoch):
        if epoch == epochs:
            raise KeyboardInterrupt
        return original(self, epoch)

    TensorBatches.epoch = stop_at
    try:
        with pytest.raises(KeyboardInterrupt):
            run()
    finally:
        TensorBatches.epoch = original


@pytest.fixture(scope="session")
def bayesdistill_wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout, built once per session outside the repository."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def installed_bayesdistill(bayesdistill_wheel: Path, tmp_path_factory) -> InstalledCommand:
    """``bayesdistill`` installed from the wheel in a fresh venv outside the repository that
    sees the declared dependencies only (no click unless declared; see tests/installed.py).

    ``installed_bayesdistill.run("list", "configs", cwd=tmp_path)`` runs the console script
    and returns the `subprocess.CompletedProcess` (text, exit status not checked)."""
    return install(bayesdistill_wheel, tmp_path_factory.mktemp("installed"))
