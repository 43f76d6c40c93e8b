"""laplace-torch used directly, as the reference bayesdistill's Laplace teachers are checked
against (tests/teachers/test_laplace.py, test_laplace_gridsearch.py)."""

from __future__ import annotations

import copy
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset


def laplace_torch_reference(
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
