"""The Laplace teacher against laplace-torch called directly with the same settings."""

from __future__ import annotations

import pytest
import torch

from bayesdistill.errors import ConfigError
from bayesdistill.teachers import fit_laplace
from tests.teachers.laplace_reference import laplace_torch_reference


@pytest.mark.parametrize("structure", ["kron", "diag", "full"])
@pytest.mark.parametrize("method", ["marglik", "gridsearch"])
def test_matches_laplace_torch_glm_probit(trained_mlp, tiny_splits, structure, method):
    teacher = fit_laplace(
        trained_mlp,
        tiny_splits.train,
        tiny_splits.val,
        hessian_structure=structure,
        prior_precision=method,
        grid=(-4.0, 4.0, 5),
    )
    la, expected = laplace_torch_reference(
        trained_mlp, tiny_splits, structure=structure, method=method
    )
    assert teacher.prior_precision == pytest.approx(float(la.prior_precision))
    assert torch.allclose(teacher.predict_proba(tiny_splits.test.x), expected.float(), atol=1e-5)


def test_matches_laplace_torch_mc_predictive(trained_mlp, tiny_splits):
    teacher = fit_laplace(
        trained_mlp,
        tiny_splits.train,
        tiny_splits.val,
        prior_precision="marglik",
        pred_type="nn",
        link_approx="mc",
        n_samples=20,
        seed=3,
    )
    _, expected = laplace_torch_reference(
        trained_mlp,
        tiny_splits,
        structure="kron",
        method="marglik",
        pred_type="nn",
        link="mc",
        n_samples=20,
        seed=3,
    )
    assert torch.allclose(teacher.predict_proba(tiny_splits.test.x), expected.float(), atol=1e-5)


def test_fixed_prior_precision_and_its_effect(trained_mlp, tiny_splits):
    sharp = fit_laplace(trained_mlp, tiny_splits.train, prior_precision=1e6)
    wide = fit_laplace(trained_mlp, tiny_splits.train, prior_precision=1e-3)
    point = torch.softmax(trained_mlp(tiny_splits.test.x), 1).detach()
    x = tiny_splits.test.x
    # a huge prior precision collapses the posterior onto the point estimate
    assert torch.allclose(sharp.predict_proba(x), point, atol=1e-3)
    # a wide posterior is less confident on average
    assert wide.predict_proba(x).max(1).values.mean() < point.max(1).values.mean()


def test_bad_settings_are_reported(trained_mlp, tiny_splits):
    with pytest.raises(ConfigError, match="needs link_approx='mc'"):
        fit_laplace(trained_mlp, tiny_splits.train, pred_type="nn", link_approx="probit")
    with pytest.raises(ConfigError, match="needs validation data"):
        fit_laplace(trained_mlp, tiny_splits.train, None, prior_precision="gridsearch")
    with pytest.raises(ConfigError, match="must be positive"):
        fit_laplace(trained_mlp, tiny_splits.train, prior_precision=-1.0)
