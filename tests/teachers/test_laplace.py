"""The Laplace teacher against laplace-torch called directly with the same settings."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from bayesdistill.errors import ConfigError
from bayesdistill.teachers import fit_laplace


def _direct(
    network,
    splits,
    *,
    structure,
    method,
    pred_type="glm",
    link="probit",
    n_samples=100,
    grid=(-4.0, 4.0, 5),
    seed=0,
):
    from laplace import Laplace

    train = DataLoader(TensorDataset(splits.train.x, splits.train.y), batch_size=256)
    val = DataLoader(TensorDataset(splits.val.x, splits.val.y), batch_size=256)
    la = Laplace(
        copy.deepcopy(network),
        "classification",
        subset_of_weights="last_layer",
        hessian_structure=structure,
        last_layer_name="head",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        la.fit(train)
        if method == "marglik":
            la.optimize_prior_precision(method="marglik", pred_type=pred_type, link_approx=link)
        else:
            la.optimize_prior_precision(
                method="gridsearch",
                pred_type=pred_type,
                link_approx=link,
                val_loader=val,
                log_prior_prec_min=grid[0],
                log_prior_prec_max=grid[1],
                grid_size=grid[2],
                n_samples=n_samples,
                # each grid point scored on its own: laplace-torch 0.3's default metric is
                # never reset between points (tests/teachers/test_laplace_gridsearch.py)
                loss=lambda p, y: -p.gather(1, y[:, None]).clamp_min(1e-12).log().mean(),
            )
        torch.manual_seed(seed)  # laplace-torch samples from the global generator
        return la, la(splits.test.x, pred_type=pred_type, link_approx=link, n_samples=n_samples)


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
    la, expected = _direct(trained_mlp, tiny_splits, structure=structure, method=method)
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
    _, expected = _direct(
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
