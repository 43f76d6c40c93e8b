"""Laplace over all weights: what laplace-torch supports, and a clear error where it does not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bayesdistill.errors import ConfigError
from bayesdistill.models import create_model
from bayesdistill.seeding import seeded
from bayesdistill.teachers import fit_laplace
from bayesdistill.teachers.laplace_adapter import kron_unsupported_layers

PREDICTIVES = [("glm", "probit"), ("glm", "mc"), ("nn", "mc")]


class NormalisedMLP(nn.Module):
    """Linear → BatchNorm1d → ReLU → linear head (BatchNorm is not K-FAC-able)."""

    def __init__(self, dim: int = 4, num_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.head = nn.Linear(8, num_classes)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def cnn(splits):
    with seeded(0):
        return create_model(
            "cnn1d", splits.input_shape, splits.num_classes, channels=(3,), kernel_size=3
        )


def check(teacher, x):
    probs = teacher.predict_proba(x)
    assert probs.shape == (len(x), 3) and torch.isfinite(probs).all()
    assert torch.allclose(probs.sum(1), torch.ones(len(x)), atol=1e-5)
    assert torch.allclose(teacher.predict_proba(x), probs, atol=1e-6)  # seeded MC


@pytest.mark.parametrize(("pred_type", "link"), PREDICTIVES)
@pytest.mark.parametrize("structure", ["diag", "kron"])
def test_all_weights_on_the_mlp(trained_mlp, tiny_splits, structure, pred_type, link):
    teacher = fit_laplace(
        trained_mlp,
        tiny_splits.train,
        subset_of_weights="all",
        hessian_structure=structure,
        prior_precision="marglik",
        pred_type=pred_type,
        link_approx=link,
        n_samples=8,
    )
    check(teacher, tiny_splits.test.x)
    assert teacher.describe()["subset_of_weights"] == "all"


@pytest.mark.parametrize(("pred_type", "link"), PREDICTIVES)
def test_all_weights_diag_on_the_cnn(tiny_splits, pred_type, link):
    teacher = fit_laplace(
        cnn(tiny_splits),
        tiny_splits.train,
        subset_of_weights="all",
        hessian_structure="diag",
        prior_precision=1.0,
        pred_type=pred_type,
        link_approx=link,
        n_samples=8,
    )
    check(teacher, tiny_splits.test.x)


def test_all_weights_kron_on_conv1d_names_the_layer(tiny_splits):
    with pytest.raises(ConfigError, match=r"Conv1d \('body.0'\).*hessian_structure='diag'"):
        fit_laplace(cnn(tiny_splits), tiny_splits.train, subset_of_weights="all")


def test_batchnorm_with_kron_is_a_clear_error_and_diag_works(tiny_splits):
    with seeded(0):
        network = NormalisedMLP().eval()
    assert kron_unsupported_layers(network) == {"body.1": "BatchNorm1d"}
    with pytest.raises(ConfigError) as caught:
        fit_laplace(network, tiny_splits.train, subset_of_weights="all", prior_precision=1.0)
    message = str(caught.value)
    assert "BatchNorm1d ('body.1')" in message
    assert "nn.Linear or nn.Conv2d" in message
    assert "hessian_structure='diag' with subset_of_weights='all'" in message
    assert "subset_of_weights='last_layer'" in message
    # what the message recommends does work
    for subset, structure in [("all", "diag"), ("last_layer", "kron")]:
        teacher = fit_laplace(
            network,
            tiny_splits.train,
            subset_of_weights=subset,
            hessian_structure=structure,
            prior_precision=1.0,
        )
        check(teacher, tiny_splits.test.x)
