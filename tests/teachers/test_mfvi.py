"""Mean-field VI: the KL and its schedule in closed form, a known posterior, both estimators."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from bayesdistill.errors import ConfigError
from bayesdistill.models import create_model
from bayesdistill.seeding import generator, seeded
from bayesdistill.teachers import (
    Estimator,
    MeanFieldLayer,
    MeanFieldTeacher,
    kl_weight,
    network_kl,
    to_mean_field,
    train_mfvi,
)
from bayesdistill.teachers.variational import sampling
from bayesdistill.train import RunOptions, TrainSettings

from ..conftest import interrupt_after, make_mlp


def test_kl_is_the_closed_form_sum_over_weights():
    layer = MeanFieldLayer(nn.Linear(5, 3), prior_std=0.7, init_std=0.2)
    with torch.no_grad():
        layer.weight_rho.normal_()
        layer.bias_rho.normal_()
    expected = sum(
        kl_divergence(Normal(mean, F.softplus(rho)), Normal(0.0, 0.7)).sum()
        for mean, rho in [(layer.weight_mean, layer.weight_rho), (layer.bias_mean, layer.bias_rho)]
    )
    assert layer.kl().item() == pytest.approx(expected.item(), rel=1e-5)


def test_default_prior_is_one_over_fan_in(tiny_splits):
    with seeded(0):
        cnn = create_model("cnn1d", (12,), 3, channels=(4, 6), kernel_size=3)
    converted = to_mean_field(cnn)
    stds = {name: float(m.prior_std) for name, m in converted.named_modules() if hasattr(m, "kl")}
    assert stds["body.0"] == pytest.approx(1 / math.sqrt(1 * 3))
    assert stds["body.2"] == pytest.approx(1 / math.sqrt(4 * 3))
    assert stds["head"] == pytest.approx(1 / math.sqrt(converted.head.in_features))
    assert float(to_mean_field(cnn, prior_std=0.5).head.prior_std) == 0.5
    layers = [m for m in converted.modules() if isinstance(m, MeanFieldLayer)]
    assert len(layers) == 3
    assert torch.allclose(network_kl(converted), sum(m.kl() for m in layers))


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.0), (49, 0.0), (50, 0.0), (55, 0.2), (60, 0.4), (74, 0.96), (75, 1.0), (99, 1.0)],
)
def test_kl_warm_up_schedule(step, expected):
    # T = 100 steps: zero for the first half, linear over the next quarter, then one
    assert kl_weight(step, 100) == pytest.approx(expected)


def test_kl_schedule_variants():
    assert kl_weight(10, 100, zero_fraction=0.0, anneal_fraction=0.0) == 1.0
    assert kl_weight(75, 100, zero_fraction=0.5, anneal_fraction=0.5) == pytest.approx(0.5)
    assert kl_weight(99, 100, zero_fraction=1.0, anneal_fraction=0.0) == 0.0


def test_eval_mode_uses_the_means_and_conversion_keeps_the_function(tiny_splits):
    with seeded(0):
        cnn = create_model("cnn1d", (12,), 3, channels=(4,), kernel_size=3, hidden=8)
    x = torch.randn(5, 12)
    converted = to_mean_field(cnn).eval()
    assert torch.allclose(converted(x), cnn.eval()(x), atol=1e-6)
    converted.train()
    assert not torch.allclose(converted(x), cnn(x))  # training mode samples weights


@pytest.mark.parametrize("estimator", ["reparam", "flipout"])
def test_recovers_the_mean_field_posterior_of_bayesian_linear_regression(estimator):
    """For a Gaussian posterior N(m, Λ⁻¹) the optimal mean-field q has mean m and
    variances 1/Λ_ii (Bishop 2006, §10.1.2); Λ = X̃ᵀX̃/σ² + I/σ_p², X̃ = [X, 1]."""
    gen = torch.Generator().manual_seed(0)
    n, noise, prior = 30, 0.5, 1.0
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -0.5], dtype=torch.float64) + 0.3
    y = y + noise * torch.randn(n, generator=gen, dtype=torch.float64)
    design = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1)
    precision = design.T @ design / noise**2 + torch.eye(3, dtype=torch.float64) / prior**2
    mean = torch.linalg.solve(precision, design.T @ y / noise**2)
    std = precision.diagonal().rsqrt()

    layer = MeanFieldLayer(nn.Linear(2, 1).double(), prior_std=prior, init_std=0.1)
    layer.estimator = Estimator(estimator)
    passes, steps = 8, 800  # independent MC draws per step, optimisation steps
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.05)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    torch.manual_seed(0)
    for _ in range(steps):
        optimizer.zero_grad()
        pred = torch.stack([layer(x).squeeze(1) for _ in range(passes)])
        nll = ((y - pred) ** 2).sum(1).mean() / (2 * noise**2)
        (nll + layer.kl()).backward()
        optimizer.step()
        schedule.step()
    fitted_mean = torch.cat([layer.weight_mean.flatten(), layer.bias_mean]).detach()
    fitted_std = F.softplus(torch.cat([layer.weight_rho.flatten(), layer.bias_rho])).detach()
    assert torch.allclose(fitted_mean, mean, atol=0.02)
    assert torch.allclose(fitted_std, std, rtol=0.05)


def test_flipout_and_reparameterisation_agree_in_expectation(tiny_splits):
    network = to_mean_field(make_mlp(tiny_splits), init_std=0.4).eval()
    x = tiny_splits.test.x[:5]
    draws = {}
    with torch.no_grad():
        for estimator in ("reparam", "flipout"):
            samples = []
            for s in range(500):
                with sampling(network, generator(7, s), estimator):
                    samples.append(torch.softmax(network(x), 1))
            draws[estimator] = torch.stack(samples)
    a, b = draws["reparam"], draws["flipout"]
    error = (a.var(0) / len(a) + b.var(0) / len(b)).sqrt()
    assert ((a.mean(0) - b.mean(0)).abs() <= 5 * error + 1e-6).all()
    assert torch.allclose(a.std(0), b.std(0), rtol=0.2, atol=1e-3)  # same marginal spread


def test_flipout_perturbs_each_example_on_its_own(tiny_splits):
    network = to_mean_field(make_mlp(tiny_splits), init_std=0.4)
    x = tiny_splits.test.x[:1].repeat(6, 1)
    with torch.no_grad(), sampling(network, generator(0, 0), "reparam"):
        shared = network(x)
    with torch.no_grad(), sampling(network, generator(0, 0), "flipout"):
        flipped = network(x)
    assert torch.allclose(shared, shared[:1].expand_as(shared))
    assert not torch.allclose(flipped, flipped[:1].expand_as(flipped))


def test_teacher_averages_its_weight_samples(tiny_splits):
    network = to_mean_field(make_mlp(tiny_splits), init_std=0.2)
    teacher = MeanFieldTeacher(network, num_samples=4, seed=3)
    x = tiny_splits.test.x
    manual = []
    with torch.no_grad():
        for s in range(4):
            with sampling(network, generator(3, s)):
                manual.append(torch.softmax(network(x), 1))
    assert torch.allclose(teacher.predict_proba(x), torch.stack(manual).mean(0), atol=1e-6)


def test_training_fits_the_data_and_the_kl_weight_widens_the_posterior(tiny_splits):
    settings = TrainSettings(epochs=6, batch_size=32, lr=0.05, optimizer="adam", weight_decay=0)

    def run(**schedule):
        teacher, _ = train_mfvi(
            to_mean_field(make_mlp(tiny_splits), init_std=0.01),
            tiny_splits.train,
            settings=settings,
            seed=0,
            estimator="flipout",
            run=RunOptions(progress=False),
            **schedule,
        )
        return teacher

    likelihood_only = run(kl_zero_fraction=1.0)
    full_elbo = run(kl_zero_fraction=0.0, kl_anneal_fraction=0.0)
    for teacher in (likelihood_only, full_elbo):
        accuracy = teacher.predict_proba(tiny_splits.test.x).argmax(1) == tiny_splits.test.y
        assert accuracy.float().mean() > 0.5  # chance is 1/3, Bayes 0.63 on this data
    # the data term alone shrinks the stds; the KL to N(0, 1/fan_in) pulls them up
    narrow = likelihood_only.describe()["posterior_std_mean"]
    wide = full_elbo.describe()["posterior_std_mean"]
    assert narrow < 0.0105 and wide > 2 * narrow  # started at 0.01


def test_training_resumes_to_the_same_posterior(tiny_splits, tmp_path):
    settings = TrainSettings(epochs=4, batch_size=32, lr=0.01, optimizer="adam", weight_decay=0)

    def run(folder, resume=False):
        return train_mfvi(
            to_mean_field(make_mlp(tiny_splits)),
            tiny_splits.train,
            settings=settings,
            seed=0,
            run=RunOptions(run_dir=folder, resume=resume, progress=False),
        )

    full, _ = run(tmp_path / "full")
    partial = tmp_path / "partial"
    interrupt_after(3, lambda: run(partial))  # stops inside the KL warm-up
    resumed, result = run(partial, resume=True)
    assert result.resumed_from_epoch == 3
    for (name, p), (_, q) in zip(
        full.network.named_parameters(), resumed.network.named_parameters(), strict=True
    ):
        assert torch.equal(p, q), name


class Normalised(nn.Module):
    """Linear → BatchNorm1d → ReLU → linear head: the shape of every CIFAR zoo network."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_normalisation_layers_stay_point_estimates_that_the_elbo_fits():
    with seeded(0):
        network = Normalised()
    converted = to_mean_field(network)  # type: ignore[arg-type]
    assert isinstance(converted.body[1], nn.BatchNorm1d)
    layers = [m for m in converted.modules() if isinstance(m, MeanFieldLayer)]
    assert len(layers) == 2  # body.0 and head
    # the KL counts the two mean-field layers only; BatchNorm adds no KL
    assert torch.allclose(network_kl(converted), layers[0].kl() + layers[1].kl())
    # the data term trains BatchNorm's scale and shift
    with sampling(converted, generator(0)):
        loss = F.cross_entropy(converted(torch.randn(16, 4)), torch.randint(0, 3, (16,)))
    loss.backward()
    assert converted.body[1].weight.grad is not None
    assert converted.body[1].weight.grad.abs().sum() > 0


def test_networks_without_convertible_layers_are_refused():
    with pytest.raises(ConfigError, match="has none .*BatchNorm1d"):
        to_mean_field(nn.Sequential(nn.BatchNorm1d(4)))  # type: ignore[arg-type]


def test_layers_it_cannot_convert_are_named():
    with pytest.raises(ConfigError, match="zero padding only"):
        MeanFieldLayer(
            nn.Conv1d(1, 2, 3, padding=1, padding_mode="circular"), prior_std=1, init_std=1
        )
    with pytest.raises(ConfigError, match="not ConvTranspose1d"):
        MeanFieldLayer(nn.ConvTranspose1d(1, 2, 3), prior_std=1, init_std=1)
    with pytest.raises(ConfigError, match="converted by to_mean_field"):
        MeanFieldTeacher(create_model("mlp", (4,), 3))


def test_weight_samples_are_drawn_once_and_give_the_sampling_predictive(tiny_splits):
    """The teacher keeps its S weight samples: later calls reuse them (no new noise) and
    give exactly the predictive of drawing sample s from generator (seed, s) each time."""
    network = to_mean_field(make_mlp(tiny_splits, hidden=(8,)), init_std=0.3)
    teacher = MeanFieldTeacher(network, num_samples=4, seed=2)
    x = tiny_splits.test.x
    first = teacher.predict_proba(x)
    assert len(teacher._samples) == 4
    drawn = []
    original = MeanFieldLayer._noise
    MeanFieldLayer._noise = lambda self, like: drawn.append(1) or original(self, like)
    try:
        again = teacher.predict_proba(x)
        part = teacher.predict_proba(x[:7])
    finally:
        MeanFieldLayer._noise = original
    assert drawn == []  # no new weight noise
    assert torch.equal(again, first)
    # A smaller batch may take another matmul kernel (last-bit differences), not other weights.
    torch.testing.assert_close(part, first[:7], rtol=0, atol=1e-6)
    expected = torch.zeros_like(first)
    with torch.no_grad():
        for s in range(4):
            with sampling(network, generator(2, s)):
                expected += torch.softmax(network(x), 1)
    torch.testing.assert_close(first, expected / 4, rtol=0, atol=1e-6)
