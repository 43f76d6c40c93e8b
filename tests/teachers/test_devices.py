"""State a teacher's training creates next to a network lives on that network's device.

`fit` trains a model where its parameters are and never moves it, so a buffer made on the
CPU beside a CUDA network stays there: MCMI's class centroids are then indexed by CUDA
labels (which raises), and DDP on NCCL cannot broadcast CPU buffers. The "meta" device
stands in for CUDA: a buffer created without a device is on the CPU, not on meta.
"""

from __future__ import annotations

import pytest
import torch

from bayesdistill.data import ArrayData
from bayesdistill.models import Classifier, create_model
from bayesdistill.teachers.mcmi import _CentroidModel
from bayesdistill.teachers.mean_field import MeanFieldLayer, to_mean_field
from bayesdistill.teachers.variational import _ELBOModel

META = torch.device("meta")


def meta_network() -> Classifier:
    with torch.device(META):
        return create_model("mlp", (4,), 3, hidden=(8,))


def assert_all_on(module: torch.nn.Module, device: torch.device) -> None:
    placed = {name: t.device for name, t in [*module.named_parameters(), *module.named_buffers()]}
    assert placed, "the module holds no tensors"
    assert set(placed.values()) == {device}, placed


def test_mean_field_prior_lives_beside_the_weights() -> None:
    converted = to_mean_field(meta_network(), prior_std=0.5)
    layers = [m for m in converted.modules() if isinstance(m, MeanFieldLayer)]
    assert layers
    assert_all_on(converted, META)


def test_mean_field_prior_value_unchanged_on_the_cpu() -> None:
    layer = MeanFieldLayer(torch.nn.Linear(4, 3), prior_std=0.25, init_std=0.1)
    assert layer.prior_std.device == torch.device("cpu")
    assert layer.prior_std.dtype == torch.float32
    assert float(layer.prior_std) == 0.25


def test_elbo_step_count_lives_beside_the_network() -> None:
    model = _ELBOModel(meta_network())
    assert model.steps_done.device == META
    assert_all_on(model, META)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_mcmi_centroids_live_beside_the_network(device: str) -> None:
    network = meta_network() if device == "meta" else create_model("mlp", (4,), 3, hidden=(8,))
    data = ArrayData(torch.randn(6, 4), torch.arange(6) % 3, 3)
    model = _CentroidModel(network, data, steps_per_epoch=2)
    assert model.centroids.device == torch.device(device)
    assert model.steps_done.device == torch.device(device)
    assert_all_on(model, torch.device(device))
    if device == "cpu":
        assert torch.equal(model.centroids, torch.full((3, 3), 1.0 / 3))
        assert int(model.steps_done) == 0
