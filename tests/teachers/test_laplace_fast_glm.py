"""The Jacobian-free last-layer K-FAC GLM predictive against laplace-torch's generic path."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bayesdistill.teachers import fit_laplace
from bayesdistill.teachers import laplace_kron as kron_module
from bayesdistill.teachers.laplace import LaplaceTeacher
from bayesdistill.teachers.laplace_kron import kron_glm_moments, kron_glm_predictive

LINKS = ["probit", "bridge", "bridge_norm", "mc"]
IN_DIM, FEATURES = 5, 7


def _network(num_classes: int, *, bias: bool = True, hidden: bool = False, dtype=torch.float64):
    """A linear head on raw inputs, or on the features of a hidden layer."""
    torch.manual_seed(0)
    if hidden:
        body: nn.Module = nn.Sequential(nn.Linear(IN_DIM, FEATURES), nn.Tanh())
        in_dim = IN_DIM
    else:
        body, in_dim = nn.Identity(), FEATURES
    network = nn.Sequential()
    network.add_module("body", body)
    network.add_module("head", nn.Linear(FEATURES, num_classes, bias=bias))
    return network.to(dtype), in_dim


def _fit(network, in_dim, num_classes, *, structure="kron", temperature=1.0, **kwargs):
    from laplace import Laplace

    dtype = next(network.parameters()).dtype
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(80, in_dim, generator=generator, dtype=dtype)
    y = torch.randint(0, num_classes, (80,), generator=generator)
    la = Laplace(
        network,
        "classification",
        subset_of_weights="last_layer",
        hessian_structure=structure,
        last_layer_name="head",
        temperature=temperature,
        **kwargs,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        la.fit(DataLoader(TensorDataset(x, y), batch_size=32))
    return la


def _inputs(in_dim, dtype=torch.float64, n=11):
    return 2 * torch.randn(n, in_dim, generator=torch.Generator().manual_seed(2), dtype=dtype)


def _generic_probs(la, x, link, n_samples=50, seed=5):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return la(x, pred_type="glm", link_approx=link, n_samples=n_samples)


def _fast_probs(la, x, link, n_samples=50, seed=5):
    torch.manual_seed(seed)
    probs = kron_glm_predictive(la, x, link, n_samples)
    assert probs is not None, "the fast path declined a last-layer K-FAC posterior"
    return probs


def _assert_moments_match(la, x, rtol):
    f_mu, f_var = la._glm_predictive_distribution(x)
    moments = kron_glm_moments(la, x)
    assert moments is not None
    fast_mu, fast_var = moments
    assert fast_var.shape == f_var.shape == (len(x), f_mu.shape[1], f_mu.shape[1])
    assert torch.allclose(fast_mu, f_mu, rtol=0, atol=rtol * f_mu.abs().max())
    assert torch.allclose(fast_var, f_var, rtol=0, atol=rtol * f_var.abs().max())
    _, diag = kron_glm_moments(la, x, diagonal=True)
    assert torch.allclose(diag, f_var.diagonal(dim1=1, dim2=2), rtol=0, atol=rtol * diag.max())


@pytest.mark.parametrize("num_classes", [3, 4])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("prior", ["scalar", "layerwise"])
def test_moments_match_laplace_torch(num_classes, bias, hidden, prior):
    network, in_dim = _network(num_classes, bias=bias, hidden=hidden)
    la = _fit(network, in_dim, num_classes)
    if prior == "layerwise":
        la.prior_precision = torch.tensor([0.3, 4.0] if bias else [0.3], dtype=torch.float64)
    else:
        la.prior_precision = 0.7
    _assert_moments_match(la, _inputs(in_dim), rtol=1e-10)


@pytest.mark.parametrize("bias", [True, False])
def test_moments_match_in_float32(bias):
    network, in_dim = _network(4, bias=bias, hidden=True, dtype=torch.float32)
    la = _fit(network, in_dim, 4)
    la.prior_precision = 0.2
    _assert_moments_match(la, _inputs(in_dim, torch.float32), rtol=1e-5)


def test_moments_depend_on_the_prior_and_temperature():
    """The comparison above would not notice the prior or the temperature being ignored
    if they had no effect on laplace-torch's covariance; they do."""
    network, in_dim = _network(3)
    x = _inputs(in_dim)
    la = _fit(network, in_dim, 3, temperature=0.3)
    la.prior_precision = torch.tensor([0.1, 10.0], dtype=torch.float64)
    _assert_moments_match(la, x, rtol=1e-10)
    cold = kron_glm_moments(la, x)[1]
    la.prior_precision = torch.tensor([10.0, 0.1], dtype=torch.float64)
    swapped = kron_glm_moments(la, x)[1]
    warm = _fit(network, in_dim, 3, temperature=3.0)
    warm.prior_precision = torch.tensor([0.1, 10.0], dtype=torch.float64)
    _assert_moments_match(warm, x, rtol=1e-10)
    assert not torch.allclose(cold, swapped, rtol=1e-3)
    assert not torch.allclose(cold, kron_glm_moments(warm, x)[1], rtol=1e-3)


@pytest.mark.parametrize("link", LINKS)
@pytest.mark.parametrize("num_classes", [3, 4])
@pytest.mark.parametrize("bias", [True, False])
def test_probabilities_match_laplace_torch(link, num_classes, bias):
    network, in_dim = _network(num_classes, bias=bias, hidden=True)
    la = _fit(network, in_dim, num_classes, temperature=0.5)
    la.prior_precision = torch.tensor([0.5, 2.0] if bias else [0.5], dtype=torch.float64)
    x = _inputs(in_dim)
    expected = _generic_probs(la, x, link)
    assert torch.allclose(_fast_probs(la, x, link), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("link", LINKS)
def test_links_match_laplace_torch_on_arbitrary_moments(link, monkeypatch):
    """The links alone, on moments unlike a softmax GGN's (whose covariance has the all-ones
    vector as an eigenvector, which hides errors in the bridge's zero-mean correction)."""
    network, in_dim = _network(4)
    la = _fit(network, in_dim, 4)
    x = _inputs(in_dim, n=6)
    generator = torch.Generator().manual_seed(3)
    f_mu = 3 * torch.randn(6, 4, generator=generator, dtype=torch.float64)
    root = torch.randn(6, 4, 4, generator=generator, dtype=torch.float64)
    f_var = root @ root.transpose(1, 2) + 0.1 * torch.eye(4, dtype=torch.float64)
    assert not torch.allclose(f_var.sum(-1), f_var.sum(-1)[:, :1].expand(6, 4), rtol=0.1)

    def moments(la_, x_, *, diagonal=False):
        return f_mu.clone(), f_var.diagonal(dim1=1, dim2=2).clone() if diagonal else f_var.clone()

    monkeypatch.setattr(kron_module, "kron_glm_moments", moments)
    monkeypatch.setattr(
        la, "_glm_predictive_distribution", lambda x_, joint=False: (f_mu.clone(), f_var.clone())
    )
    expected = _generic_probs(la, x, link)
    assert torch.allclose(_fast_probs(la, x, link), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("link", LINKS)
def test_probabilities_match_in_float32(link):
    network, in_dim = _network(4, hidden=True, dtype=torch.float32)
    la = _fit(network, in_dim, 4)
    la.prior_precision = 0.3
    x = _inputs(in_dim, torch.float32)
    expected = _generic_probs(la, x, link)
    assert torch.allclose(_fast_probs(la, x, link), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_after_marglik_prior_optimisation(bias):
    network, in_dim = _network(4, bias=bias, hidden=True)
    la = _fit(network, in_dim, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        la.optimize_prior_precision(method="marglik", pred_type="glm", n_steps=30)
    assert float(la.prior_precision) != pytest.approx(1.0)  # the optimiser moved it
    x = _inputs(in_dim)
    _assert_moments_match(la, x, rtol=1e-10)
    for link in LINKS:
        assert torch.allclose(_fast_probs(la, x, link), _generic_probs(la, x, link), atol=1e-10)


def test_diagonal_prior_cannot_reach_a_kron_posterior():
    """A diagonal prior would break the Kronecker eigenbasis; laplace-torch refuses it on
    K-FAC posteriors, and the fast path declines one forced past that check."""
    network, in_dim = _network(3)
    la = _fit(network, in_dim, 3)
    with pytest.raises(ValueError, match="scalar or per-layer"):
        la.prior_precision = torch.ones(la.n_params, dtype=torch.float64)
    la._prior_precision = torch.ones(la.n_params, dtype=torch.float64)
    assert kron_glm_moments(la, _inputs(in_dim)) is None
    assert kron_glm_predictive(la, _inputs(in_dim)) is None


@pytest.mark.parametrize("structure", ["diag", "full"])
def test_other_posteriors_fall_back(structure):
    network, in_dim = _network(3)
    la = _fit(network, in_dim, 3, structure=structure)
    assert kron_glm_moments(la, _inputs(in_dim)) is None
    assert kron_glm_predictive(la, _inputs(in_dim), "probit") is None


def test_backprop_posterior_falls_back():
    network, in_dim = _network(3)
    la = _fit(network, in_dim, 3, enable_backprop=True)
    assert kron_glm_moments(la, _inputs(in_dim)) is None


def _block_generic_path(la, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the generic GLM predictive was used")

    monkeypatch.setattr(la, "_glm_predictive_distribution", refuse)


@pytest.mark.parametrize("link", LINKS)
def test_teacher_uses_the_fast_path_and_matches_laplace_torch(
    trained_mlp, tiny_splits, link, monkeypatch
):
    teacher = fit_laplace(
        trained_mlp,
        tiny_splits.train,
        subset_of_weights="last_layer",
        hessian_structure="kron",
        prior_precision="marglik",
        link_approx=link,
        n_samples=30,
        seed=4,
    )
    x = tiny_splits.test.x
    expected = _generic_probs(teacher.laplace, x, link, n_samples=30, seed=4)
    expected = expected.clamp_min(0.0) / expected.clamp_min(0.0).sum(1, keepdim=True)
    _block_generic_path(teacher.laplace, monkeypatch)
    got = teacher.predict_proba(x)
    assert torch.allclose(got, expected.float(), rtol=0, atol=1e-5)
    # and after a save/reload round trip (the posterior is rebuilt from its state)
    reloaded = LaplaceTeacher.from_payload(teacher.payload())
    _block_generic_path(reloaded.laplace, monkeypatch)
    assert torch.allclose(reloaded.predict_proba(x), got, rtol=0, atol=1e-6)


def test_teacher_keeps_other_configurations_on_laplace_torch(trained_mlp, tiny_splits, monkeypatch):
    calls = []
    original = kron_module.kron_glm_predictive

    def spy(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(kron_module, "kron_glm_predictive", spy)
    x = tiny_splits.test.x
    for structure in ["diag", "full"]:
        teacher = fit_laplace(
            trained_mlp, tiny_splits.train, hessian_structure=structure, prior_precision=1.0
        )
        expected = _generic_probs(teacher.laplace, x, "probit")
        assert torch.allclose(teacher.predict_proba(x), expected.float(), atol=1e-6)
    nn_teacher = fit_laplace(
        trained_mlp, tiny_splits.train, prior_precision=1.0, pred_type="nn", link_approx="mc"
    )
    nn_teacher.predict_proba(x)
    assert calls == []
    kron = fit_laplace(trained_mlp, tiny_splits.train, prior_precision=1.0)
    kron.predict_proba(x)
    assert len(calls) == 1


def test_laplace_torch_is_a_version_the_bound_allows():
    """laplace_kron reads laplace-torch internals: pyproject.toml bounds laplace-torch above,
    and these tests run against a version inside the bound."""
    import re
    from importlib.metadata import version
    from pathlib import Path

    from packaging.requirements import Requirement

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("run from a checkout (pyproject.toml)")
    (declared,) = re.findall(r'"(laplace-torch[^"]*)"', pyproject.read_text(encoding="utf-8"))
    laplace = Requirement(declared)
    assert any(spec.operator in ("<", "<=", "~=", "==") for spec in laplace.specifier)
    assert laplace.specifier.contains(version("laplace-torch"))
