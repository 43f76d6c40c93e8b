"""The grid search of the Laplace prior precision against validation NLLs computed by hand.

laplace-torch 0.3 scores its grid with one ``RunningNLLMetric`` that it never resets, so each
grid point got the running mean of the NLLs of all points so far and the search favoured the
last points of the grid. These tests compute each point's NLL independently, and also that
running mean, to show that the old choice differs from the right one on these cases.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from bayesdistill.data import DataSplits
from bayesdistill.metrics import NLL_EPS
from bayesdistill.models import Classifier
from bayesdistill.teachers import fit_laplace
from tests.conftest import train_mlp
from tests.teachers.laplace_reference import laplace_torch_reference

SMALL_GRID = (-4.0, 4.0, 5)
"""log10 min, log10 max, points: 1e-4, 1e-2, 1, 1e2, 1e4."""


@pytest.fixture(scope="module")
def longer_trained_mlp(tiny_splits: DataSplits) -> Classifier:
    """``trained_mlp`` trained for 60 epochs instead of 5: confident enough that the
    validation NLL rises again towards large prior precisions."""
    return train_mlp(tiny_splits, epochs=60)


def _running_mean(values: np.ndarray) -> np.ndarray:
    return np.cumsum(values) / np.arange(1, len(values) + 1)


def _grid(grid: tuple[float, float, int]) -> Tensor:
    # laplace-torch's grid: torch.logspace in the default dtype
    return torch.logspace(grid[0], grid[1], grid[2])


def _validation_nlls(
    network: Classifier, splits: DataSplits, structure: str, grid: tuple[float, float, int]
) -> np.ndarray:
    """Validation NLL of the teacher's predictive at each grid value, from one fit."""
    teacher = fit_laplace(network, splits.train, hessian_structure=structure, prior_precision=1.0)
    nlls = []
    for value in _grid(grid):
        teacher.laplace.prior_precision = float(value)
        probs = teacher.predict_proba(splits.val.x).double()
        p_true = probs.gather(1, splits.val.y.reshape(-1, 1)).clamp_min(NLL_EPS)
        nlls.append(float(-p_true.log().mean()))
    return np.array(nlls)


@pytest.mark.parametrize(
    ("network", "structure"),
    [
        ("trained_mlp", "kron"),
        ("trained_mlp", "diag"),
        ("trained_mlp", "full"),
        ("longer_trained_mlp", "kron"),
        ("longer_trained_mlp", "full"),
    ],
)
def test_gridsearch_picks_the_argmin_of_validation_nll(request, tiny_splits, network, structure):
    network = request.getfixturevalue(network)
    nlls = _validation_nlls(network, tiny_splits, structure, SMALL_GRID)
    best = float(_grid(SMALL_GRID)[np.argmin(nlls)])
    # what laplace-torch 0.3's unreset running metric picked: argmin of the running mean
    old = float(_grid(SMALL_GRID)[np.argmin(_running_mean(nlls))])
    assert old != best, "this case no longer tells the two searches apart"

    teacher = fit_laplace(
        network,
        tiny_splits.train,
        tiny_splits.val,
        hessian_structure=structure,
        prior_precision="gridsearch",
        grid=SMALL_GRID,
    )
    assert teacher.prior_method == "gridsearch"
    assert teacher.prior_precision == pytest.approx(best, rel=1e-6)


def test_gridsearch_with_the_registry_default_grid(longer_trained_mlp, tiny_splits):
    grid = (-4.0, 4.0, 41)  # build_laplace's default
    nlls = _validation_nlls(longer_trained_mlp, tiny_splits, "kron", grid)
    assert np.argmin(_running_mean(nlls)) != np.argmin(nlls)
    teacher = fit_laplace(
        longer_trained_mlp, tiny_splits.train, tiny_splits.val, prior_precision="gridsearch"
    )
    assert teacher.prior_precision == pytest.approx(float(_grid(grid)[np.argmin(nlls)]), rel=1e-6)


def test_score_is_laplace_torchs_nll_of_one_grid_point(rng):
    from laplace.utils import RunningNLLMetric

    from bayesdistill.teachers.laplace_adapter import validation_nll

    probs = torch.softmax(torch.randn(300, 4, generator=rng), 1)
    targets = torch.randint(0, 4, (300,), generator=rng)
    metric = RunningNLLMetric()  # fresh: one grid point, fed in batches as `validate` does
    for batch in range(0, 300, 128):
        metric.update(probs[batch : batch + 128], targets[batch : batch + 128])
    assert float(validation_nll(probs, targets)) == pytest.approx(float(metric.compute()), rel=1e-6)
    # a zero probability of the label scores a large finite loss, not inf
    probs[0] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    targets[0] = 1
    assert torch.isfinite(validation_nll(probs, targets))


@pytest.mark.parametrize("structure", ["kron", "diag", "full"])
def test_marglik_is_laplace_torchs_own(trained_mlp, tiny_splits, structure):
    # the fix touches only the grid search: marglik is laplace-torch's, validation data unused
    la, _ = laplace_torch_reference(trained_mlp, tiny_splits, structure=structure, method="marglik")
    teachers = [
        fit_laplace(trained_mlp, tiny_splits.train, val, hessian_structure=structure)
        for val in (None, tiny_splits.val)  # marglik ignores validation data
    ]
    for teacher in teachers:
        assert teacher.prior_method == "marglik"
        assert teacher.prior_precision == pytest.approx(float(la.prior_precision), rel=1e-6)
