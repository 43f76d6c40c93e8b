"""Feature-distribution losses (KD²M) against POT, scipy closed forms and direct loops."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import scipy.linalg
import torch

from bayesdistill.errors import ConfigError, DataError
from bayesdistill.losses.feature import (
    FEATURE_LOSSES,
    gaussian_kl,
    gaussian_w2,
    gaussian_w2_class_conditional,
    mmd,
    w2_class_conditional,
    w2_empirical,
    w2_joint,
)
from bayesdistill.losses.feature_gaussian import (
    bures_wasserstein_squared,
    fit_gaussian,
    gaussian_kl_divergence,
)

F64 = torch.float64


def _clouds(gen: torch.Generator, batch: int = 12, dim: int = 3, classes: int = 3):
    student = torch.randn(batch, dim, generator=gen, dtype=F64)
    teacher = 0.7 * torch.randn(batch, dim, generator=gen, dtype=F64) + 0.5
    targets = torch.arange(batch) % classes
    return student, teacher, targets


def _emd2(x: np.ndarray, y: np.ndarray) -> float:
    weights = np.full(len(x), 1.0 / len(x))
    return float(ot.emd2(weights, weights, ot.dist(x, y)))


def _random_spd(gen: torch.Generator, dim: int) -> np.ndarray:
    a = torch.randn(dim, dim, generator=gen, dtype=F64).numpy()
    return a @ a.T / dim + 0.3 * np.eye(dim)


# --- empirical OT -------------------------------------------------------------------------


def test_w2_empirical_equals_pot_emd2(rng):
    for _ in range(3):
        student, teacher, targets = _clouds(rng)
        expected = _emd2(student.numpy(), teacher.numpy())
        assert w2_empirical(student, teacher, targets).item() == pytest.approx(expected, rel=1e-10)
        both = w2_empirical(student, teacher, targets, solver="emd2").item()
        assert both == pytest.approx(expected, rel=1e-10)


def test_w2_empirical_gradient_matches_finite_differences(rng):
    student, teacher, targets = _clouds(rng, batch=8)
    z = student.clone().requires_grad_(True)
    w2_empirical(z, teacher, targets).backward()
    h = 1e-6
    numeric = torch.zeros_like(student)
    for idx in np.ndindex(*student.shape):
        up, down = student.clone(), student.clone()
        up[idx] += h
        down[idx] -= h
        diff = _emd2(up.numpy(), teacher.numpy()) - _emd2(down.numpy(), teacher.numpy())
        numeric[idx] = diff / (2 * h)
    assert torch.allclose(z.grad, numeric, atol=1e-6)
    z2 = student.clone().requires_grad_(True)
    w2_empirical(z2, teacher, targets, solver="emd2").backward()
    assert torch.allclose(z2.grad, z.grad, atol=1e-12)


def test_w2_empirical_of_a_set_with_itself_and_a_translate(rng):
    student, _, targets = _clouds(rng, batch=10, dim=4)
    assert w2_empirical(student, student, targets).item() == pytest.approx(0.0, abs=1e-12)
    shift = torch.tensor([1.5, -2.0, 0.25, 3.0], dtype=F64)
    value = w2_empirical(student + shift, student, targets).item()
    assert value == pytest.approx(shift.pow(2).sum().item(), rel=1e-10)


@pytest.mark.parametrize("weighting", ["sum", "mean", "proportional"])
def test_w2_class_conditional_is_per_class_emd2(rng, weighting):
    student, teacher, _ = _clouds(rng, batch=11)
    targets = torch.tensor([4, 0, 4, 2, 0, 4, 2, 2, 4, 7, 0])  # class 7 seen once
    classes = sorted(set(targets.tolist()))
    total = 0.0
    for c in classes:
        mask = (targets == c).numpy()
        d = _emd2(student.numpy()[mask], teacher.numpy()[mask])
        weight = {"sum": 1.0, "mean": 1 / len(classes), "proportional": mask.sum() / 11}
        total += weight[weighting] * d
    value = w2_class_conditional(student, teacher, targets, weighting=weighting).item()
    assert value == pytest.approx(total, rel=1e-10)


def test_w2_joint_interpolates_between_w2_and_class_conditional(rng):
    student, teacher, targets = _clouds(rng, batch=12)
    w2 = w2_empirical(student, teacher, targets).item()
    cw2 = w2_class_conditional(student, teacher, targets, weighting="proportional").item()
    assert w2_joint(student, teacher, targets, beta=0.0).item() == pytest.approx(w2, rel=1e-10)
    assert w2_joint(student, teacher, targets).item() == pytest.approx(cw2, rel=1e-10)
    assert w2_joint(student, teacher, targets, beta=1e6).item() == pytest.approx(cw2, rel=1e-10)
    middle = w2_joint(student, teacher, targets, beta=0.5).item()
    assert w2 <= middle <= cw2


def test_w2_joint_value_includes_the_label_price():
    # two classes whose features are swapped: with a small β crossing is cheaper
    student = torch.tensor([[0.0, 0.0], [10.0, 0.0]], dtype=F64)
    teacher = torch.tensor([[10.0, 0.0], [0.0, 0.0]], dtype=F64)
    targets = torch.tensor([0, 1])
    assert w2_joint(student, teacher, targets, beta=3.0).item() == pytest.approx(3.0)
    assert w2_joint(student, teacher, targets).item() == pytest.approx(100.0)


# --- Gaussian closed forms ----------------------------------------------------------------


def _bures_scipy(m1, c1, m2, c2) -> float:
    root = scipy.linalg.sqrtm(c1)
    cross = np.real(scipy.linalg.sqrtm(root @ c2 @ root))
    return float(np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * cross))


def _kl_closed_form(m0, c0, m1, c1) -> float:
    inv1 = np.linalg.inv(c1)
    diff = m1 - m0
    logdet = np.linalg.slogdet(c1)[1] - np.linalg.slogdet(c0)[1]
    return 0.5 * float(np.trace(inv1 @ c0) + diff @ inv1 @ diff - len(m0) + logdet)


def test_bures_and_kl_against_scipy_on_known_gaussians(rng):
    dim = 4
    m1 = torch.randn(dim, generator=rng, dtype=F64)
    m2 = torch.randn(dim, generator=rng, dtype=F64)
    c1, c2 = _random_spd(rng, dim), _random_spd(rng, dim)
    t1, t2 = torch.from_numpy(c1), torch.from_numpy(c2)
    value = bures_wasserstein_squared(m1, t1, m2, t2, "full").item()
    assert value == pytest.approx(_bures_scipy(m1.numpy(), c1, m2.numpy(), c2), rel=1e-9)
    # symmetric in its two Gaussians
    assert bures_wasserstein_squared(m2, t2, m1, t1, "full").item() == pytest.approx(value)
    kl = gaussian_kl_divergence(m1, t1, m2, t2, "full", ridge=0.0).item()
    assert kl == pytest.approx(_kl_closed_form(m1.numpy(), c1, m2.numpy(), c2), rel=1e-9)
    ridge = 0.1
    eye = np.eye(dim)
    kl_ridged = gaussian_kl_divergence(m1, t1, m2, t2, "full", ridge=ridge).item()
    expected = _kl_closed_form(m1.numpy(), c1 + ridge * eye, m2.numpy(), c2 + ridge * eye)
    assert kl_ridged == pytest.approx(expected, rel=1e-9)


def test_diagonal_and_full_agree_on_diagonal_covariances(rng):
    m1, m2 = torch.randn(2, 5, generator=rng, dtype=F64)
    v1 = torch.rand(5, generator=rng, dtype=F64) + 0.1
    v2 = torch.rand(5, generator=rng, dtype=F64) + 0.1
    full = bures_wasserstein_squared(m1, v1.diag(), m2, v2.diag(), "full").item()
    diag = bures_wasserstein_squared(m1, v1, m2, v2, "diagonal").item()
    assert diag == pytest.approx(full, rel=1e-10)
    assert diag == pytest.approx(((m1 - m2) ** 2).sum() + ((v1.sqrt() - v2.sqrt()) ** 2).sum())
    kl_full = gaussian_kl_divergence(m1, v1.diag(), m2, v2.diag(), "full", 1e-3).item()
    assert gaussian_kl_divergence(m1, v1, m2, v2, "diagonal", 1e-3).item() == pytest.approx(
        kl_full, rel=1e-10
    )


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_gaussian_losses_use_the_batch_mean_and_1_over_b_covariance(rng, covariance):
    student, teacher, targets = _clouds(rng, batch=40, dim=3)
    s, t = student.numpy(), teacher.numpy()
    ms, mt = s.mean(0), t.mean(0)
    cs, ct = np.cov(s.T, bias=True), np.cov(t.T, bias=True)
    if covariance == "diagonal":
        cs, ct = np.diag(np.diag(cs)), np.diag(np.diag(ct))
    w2 = gaussian_w2(student, teacher, targets, covariance=covariance).item()
    assert w2 == pytest.approx(_bures_scipy(ms, cs, mt, ct), rel=1e-9)
    kl_st = gaussian_kl(student, teacher, targets, covariance=covariance, ridge=0.0).item()
    assert kl_st == pytest.approx(_kl_closed_form(ms, cs, mt, ct), rel=1e-9)
    kl_ts = gaussian_kl(
        student, teacher, targets, covariance=covariance, ridge=0.0, direction="teacher_student"
    ).item()
    assert kl_ts == pytest.approx(_kl_closed_form(mt, ct, ms, cs), rel=1e-9)


def test_gaussian_losses_agree_when_batch_covariances_are_diagonal():
    # (±a, 0), (0, ±b) around a centre: mean = centre, covariance = diag(a²/2, b²/2)
    def cross(a: float, b: float, centre: tuple[float, float]) -> torch.Tensor:
        points = [[a, 0.0], [-a, 0.0], [0.0, b], [0.0, -b]]
        return torch.tensor(points, dtype=F64) + torch.tensor(centre, dtype=F64)

    student, teacher = cross(1.0, 3.0, (0.5, -1.0)), cross(2.0, 0.5, (0.0, 2.0))
    targets = torch.zeros(4, dtype=torch.long)
    for loss in (gaussian_w2, gaussian_kl):
        diag = loss(student, teacher, targets, covariance="diagonal").item()
        full = loss(student, teacher, targets, covariance="full").item()
        assert diag == pytest.approx(full, rel=1e-10)
    expected_w2 = (
        (0.5**2 + 3.0**2)
        + (1 / math.sqrt(2) * (1.0 - 2.0)) ** 2
        + (1 / math.sqrt(2) * (3.0 - 0.5)) ** 2
    )
    assert gaussian_w2(student, teacher, targets).item() == pytest.approx(expected_w2)


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
@pytest.mark.parametrize("weighting", ["sum", "mean", "proportional"])
def test_gaussian_w2_class_conditional_is_per_class_gaussian_w2(rng, covariance, weighting):
    student, teacher, _ = _clouds(rng, batch=14, dim=3)
    targets = torch.tensor([5, 1, 5, 5, 1, 9, 1, 5, 1, 5, 9, 1, 5, 3])  # class 3 seen once
    classes = sorted(set(targets.tolist()))
    total = 0.0
    for c in classes:
        mask = targets == c
        twice = (student[mask].repeat(2, 1), teacher[mask].repeat(2, 1), targets[mask].repeat(2))
        d = gaussian_w2(*twice, covariance=covariance)  # repeating keeps mean and 1/B cov
        weight = {"sum": 1.0, "mean": 1 / len(classes), "proportional": mask.sum().item() / 14}
        total += weight[weighting] * d.item()
    value = gaussian_w2_class_conditional(
        student, teacher, targets, covariance=covariance, weighting=weighting
    ).item()
    assert value == pytest.approx(total, rel=1e-9)


@pytest.mark.parametrize(
    ("loss", "options"),
    [
        (gaussian_w2, {"covariance": "full"}),
        (gaussian_w2_class_conditional, {"covariance": "full", "weighting": "proportional"}),
        (gaussian_kl, {"covariance": "full"}),
        (gaussian_kl, {"covariance": "full", "direction": "teacher_student"}),
        (gaussian_kl, {"direction": "teacher_student"}),
        (mmd, {"bandwidths": (0.7, 2.0), "unbiased": True}),  # the median is detached
    ],
)
def test_gaussian_and_kernel_gradients_pass_gradcheck(rng, loss, options):
    student, teacher, targets = _clouds(rng, batch=10, dim=3, classes=2)
    z = student.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loss(x, teacher, targets, **options), (z,))


@pytest.mark.parametrize("name", ["w2_empirical", "gaussian_w2", "gaussian_w2_class_conditional"])
@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_w2_distances_scale_as_squared_features_even_when_rank_deficient(rng, name, covariance):
    student, teacher, targets = _clouds(rng, batch=4, dim=6)  # B < D: singular covariances
    options = {} if name == "w2_empirical" else {"covariance": covariance}
    base = FEATURE_LOSSES.build(name, student, teacher, targets, **options).item()
    for scale in (1e-3, 1e4):
        scaled = FEATURE_LOSSES.build(name, scale * student, scale * teacher, targets, **options)
        assert scaled.item() == pytest.approx(scale**2 * base, rel=1e-9)


def test_fit_gaussian_matches_numpy(rng):
    x = torch.randn(30, 4, generator=rng, dtype=F64)
    mean, cov = fit_gaussian(x, "full")
    assert np.allclose(cov.numpy(), np.cov(x.numpy().T, bias=True))
    assert np.allclose(fit_gaussian(x, "diagonal")[1].numpy(), x.numpy().var(0))
    assert np.allclose(mean.numpy(), x.numpy().mean(0))


# --- MMD ----------------------------------------------------------------------------------


def _mmd_loop(x: np.ndarray, y: np.ndarray, sigmas: list[float], unbiased: bool) -> float:
    def k(a, b):
        return sum(math.exp(-float(np.sum((a - b) ** 2)) / (2 * s**2)) for s in sigmas)

    n = len(x)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if not (unbiased and i == j))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if not (unbiased and i == j))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(n))
    within = n * (n - 1) if unbiased else n * n
    return (xx + yy) / within - 2 * xy / (n * n)


@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd_against_a_double_loop(rng, unbiased):
    student, teacher, targets = _clouds(rng, batch=9, dim=3)
    x, y = student.numpy(), teacher.numpy()
    sigmas = [0.5, 1.0, 4.0]
    value = mmd(student, teacher, targets, bandwidths=tuple(sigmas), unbiased=unbiased).item()
    assert value == pytest.approx(_mmd_loop(x, y, sigmas, unbiased), rel=1e-10)
    pooled = np.concatenate([x, y])
    dists = [np.linalg.norm(pooled[i] - pooled[j]) for i in range(18) for j in range(i + 1, 18)]
    median = float(torch.tensor(dists).median())  # lower median, as torch.median
    median_value = mmd(student, teacher, targets, median_multipliers=(0.5, 2.0)).item()
    assert median_value == pytest.approx(_mmd_loop(x, y, [median / 2, 2 * median], False))


def test_mmd_is_zero_for_identical_sets(rng):
    student, _, targets = _clouds(rng)
    assert mmd(student, student.clone(), targets).item() == pytest.approx(0.0, abs=1e-12)
    same = torch.ones(4, 3, dtype=F64)  # every distance 0: median heuristic falls back
    assert mmd(same, same, targets[:4]).item() == pytest.approx(0.0, abs=1e-12)


# --- contract over every registered distance ---------------------------------------------


def _variant(name: str, **options: object):
    return pytest.param(name, options, id="-".join([name, *map(str, options.values())]))


VARIANTS = [_variant(name) for name in FEATURE_LOSSES.names()] + [
    _variant("gaussian_w2", covariance="full"),
    _variant("gaussian_w2_class_conditional", covariance="full"),
    _variant("gaussian_kl", covariance="full"),
    _variant("gaussian_kl", direction="teacher_student"),
    _variant("gaussian_kl", covariance="full", direction="teacher_student"),
    _variant("mmd", unbiased=True),
    _variant("w2_joint", beta=2.0),
]
ZERO_AT_EQUALITY = [v for v in VARIANTS if not v.values[1].get("unbiased")]  # U-statistics are not


@pytest.mark.parametrize(("name", "options"), ZERO_AT_EQUALITY)
def test_every_distance_is_zero_between_identical_batches(rng, name, options):
    student, _, targets = _clouds(rng, batch=16, dim=3)
    value = FEATURE_LOSSES.build(name, student, student.clone(), targets, **options)
    assert value.ndim == 0
    assert value.item() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(("name", "options"), VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("batch", "dim", "scale"), [(2, 5, 1.0), (6, 8, 1e4), (12, 3, 1e4)])
def test_every_distance_is_finite_and_differentiable(name, options, dtype, batch, dim, scale):
    gen = torch.Generator().manual_seed(batch * dim)
    student = (scale * (2 * torch.rand(batch, dim, generator=gen) - 1)).to(dtype)
    teacher = (scale * (2 * torch.rand(batch, dim, generator=gen) - 1)).to(dtype)
    student[:, 0] = 0.0  # a dead feature (zero variance) in both batches
    teacher[:, 0] = 0.0
    teacher.requires_grad_(True)
    z = student.clone().requires_grad_(True)
    targets = torch.arange(batch) % 2
    value = FEATURE_LOSSES.build(name, z, teacher, targets, **options)
    value.backward()
    assert torch.isfinite(value)
    assert value.dtype == dtype
    assert z.grad is not None and torch.isfinite(z.grad).all()
    assert z.grad.abs().sum() > 0
    assert teacher.grad is None  # teacher features are constants


def test_half_precision_features_are_promoted():
    student = torch.randn(6, 4).half().requires_grad_(True)
    teacher = torch.randn(6, 4).half()
    value = FEATURE_LOSSES.build("gaussian_w2", student, teacher, torch.zeros(6, dtype=torch.long))
    value.backward()
    assert value.dtype == torch.float32 and student.grad.dtype == torch.float16


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FEATURE_LOSSES.names())
def test_bad_inputs_are_clear_errors(name):
    loss = FEATURE_LOSSES.get(name)
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ConfigError, match=r"D = 3 .* D = 5.*projection"):
        loss(torch.zeros(4, 3), torch.zeros(4, 5), y)
    with pytest.raises(DataError, match=r"same batch.*B = 4 \(student\) and B = 3"):
        loss(torch.zeros(4, 3), torch.zeros(3, 3), y)
    with pytest.raises(DataError, match="at least 2 samples, got B = 1"):
        loss(torch.zeros(1, 3), torch.zeros(1, 3), y[:1])
    with pytest.raises(DataError, match=r"\(B, D\) features"):
        loss(torch.zeros(4, 3, 2), torch.zeros(4, 3, 2), y)
    bad = torch.zeros(4, 3)
    bad[2, 1] = float("nan")
    with pytest.raises(DataError, match="student features contain NaN"):
        loss(bad, torch.zeros(4, 3), y)
    with pytest.raises(DataError, match="teacher features contain NaN"):
        loss(torch.zeros(4, 3), bad, y)


@pytest.mark.parametrize(
    "name", [n for n in FEATURE_LOSSES.names() if FEATURE_LOSSES.entry(n).tags["uses_targets"]]
)
def test_class_aware_distances_check_targets(name):
    x = torch.randn(4, 3)
    with pytest.raises(DataError, match=r"labels must have shape \(4,\)"):
        FEATURE_LOSSES.get(name)(x, x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(DataError, match="int64 class indices"):
        FEATURE_LOSSES.get(name)(x, x, torch.zeros(4))


def test_bad_options_are_config_errors():
    x, y = torch.randn(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ConfigError, match="covariance"):
        FEATURE_LOSSES.build("gaussian_w2", x, x, y, covariance="diag")
    with pytest.raises(ConfigError, match=r"beta must lie in \[0, inf\)"):
        w2_joint(x, x, y, beta=-1.0)
    with pytest.raises(ConfigError, match="bandwidths must be a non-empty list of positive"):
        mmd(x, x, y, bandwidths=(1.0, 0.0))
    with pytest.raises(ConfigError, match="either bandwidths or median_multipliers"):
        mmd(x, x, y, bandwidths=(1.0,), median_multipliers=(2.0,))
    with pytest.raises(ConfigError, match="weighting must be one of"):
        w2_class_conditional(x, x, y, weighting="uniform")
    with pytest.raises(ConfigError, match=r"ridge must lie in \[0, inf\)"):
        gaussian_kl(x, x, y, ridge=-1e-3)
    with pytest.raises(ConfigError, match="unknown feature loss 'w2'"):
        FEATURE_LOSSES.entry("w2")
