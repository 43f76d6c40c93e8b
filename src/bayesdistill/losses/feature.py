"""Feature-distribution matching losses of KD²M (Montesuma, GSI 2025, arXiv 2504.01757).

KD²M distils by ``CE + λ·D(P_S, P_T)``, where P_S and P_T are the distributions of the
student's and the teacher's penultimate features on a batch. Every distance here is a pure
function

    distance(student_features (B, D), teacher_features (B, D), targets (B,), **hparams) -> scalar

where row i of both feature matrices comes from the same input x_i with label
``targets[i]``. Teacher features are constants (detached); the value is differentiable with
respect to the student features. Student and teacher must have the same feature dimension
D: if they differ, the student needs a projection (a learned linear layer, say) that you
choose and add to the student. Half-precision features are promoted to float32, because
optimal transport and eigendecompositions need it.

Empirical distances (exact optimal transport between the two batches, uniform weights,
squared-Euclidean cost ``C_ij = ‖z_S,i − z_T,j‖²``): ``w2_empirical``,
``w2_class_conditional`` (CW2), ``w2_joint`` (JW2). The plan P is solved by POT's network
simplex (``ot.emd``) on the detached cost and the loss is ``Σ_ij P_ij C_ij``; by the
envelope theorem the gradient through C with P held fixed is the gradient of the optimal
value wherever the optimal plan is unique. Gaussian distances (closed forms on the batch
Gaussians, see `bayesdistill.losses.feature_gaussian`): ``gaussian_w2``,
``gaussian_w2_class_conditional``, ``gaussian_kl``. Kernel distance: ``mmd``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Annotated, Literal

import numpy as np
import torch
from torch import Tensor

from bayesdistill.errors import ConfigError
from bayesdistill.losses.checks import NON_NEGATIVE, checked_loss
from bayesdistill.losses.feature_gaussian import (
    COVARIANCES,
    GAUSSIAN_KL_RIDGE,
    Covariance,
    bures_wasserstein_squared,
    fit_class_gaussians,
    fit_gaussian,
    gaussian_kl_divergence,
)
from bayesdistill.registry import Registry

FeatureLoss = Callable[..., Tensor]

FEATURE_LOSSES: Registry[FeatureLoss] = Registry("feature loss")
"""Feature distances by name. Tag ``uses_targets``: whether the labels enter the value."""


def _feature_loss(name: str, *, uses_targets: bool) -> Callable[[FeatureLoss], FeatureLoss]:
    """Register the checked form (`checked_loss`) of a raw feature distance under ``name``."""

    def decorate(raw: FeatureLoss) -> FeatureLoss:
        checked = checked_loss("feature", uses_targets=uses_targets)(raw)
        return FEATURE_LOSSES.register(name, uses_targets=uses_targets)(checked)

    return decorate


EMD_MAX_ITERATIONS = 1_000_000
"""Network-simplex iteration cap for ``ot.emd`` (POT's default, 100 000, can be reached
for batches of a few hundred points)."""

ClassWeighting = Literal["sum", "mean", "proportional"]
"""How class-conditional distances combine the per-class terms d_c over the classes in the
batch: ``"sum"`` Σ_c d_c (the KD²M code); ``"mean"`` the average over those classes;
``"proportional"`` Σ_c (n_c / B) d_c, the expectation over the batch's labels."""

CLASS_WEIGHTINGS: tuple[str, ...] = ("sum", "mean", "proportional")


@_feature_loss("w2_empirical", uses_targets=False)
def w2_empirical(
    student_features: Tensor,
    teacher_features: Tensor,
    targets: Tensor,
    *,
    solver: Literal["emd", "emd2"] = "emd",
) -> Tensor:
    """Squared 2-Wasserstein distance between the two batches: ``Σ_ij P_ij ‖z_S,i − z_T,j‖²``.

    P is the exact optimal plan between the uniform measures on the two batches (KD²M's
    W2(E)). ``solver="emd"`` solves P with ``ot.emd`` on the detached costs and returns
    ``Σ P ⊙ C`` (gradient ``Σ_j P_ij · 2(z_S,i − z_T,j)``); ``solver="emd2"`` returns
    ``ot.emd2(a, b, C)`` with POT's own autograd, the same value and gradient.

    Args:
        student_features: ``(B, D)``.
        teacher_features: ``(B, D)``, constants.
        targets: ``(B,)`` labels (unused).
        solver: ``"emd"`` or ``"emd2"`` as above.

    Returns:
        Scalar W2², in squared feature units (not divided by D).
    """
    student, teacher = _as_float(student_features, teacher_features)
    _check_choice("w2_empirical", "solver", solver, ("emd", "emd2"))
    cost = squared_distances(student, teacher)
    if solver == "emd2":
        import ot  # POT is imported on first use: it adds ~0.6 s to every start-up

        weights = torch.full(
            (cost.shape[0],), 1.0 / cost.shape[0], dtype=cost.dtype, device=cost.device
        )
        return ot.emd2(weights, weights, cost, numItermax=EMD_MAX_ITERATIONS)
    plan = _plan_to(_exact_plan(_to_numpy(cost)), cost)
    return (plan * cost).sum()


@_feature_loss("w2_class_conditional", uses_targets=True)
def w2_class_conditional(
    student_features: Tensor,
    teacher_features: Tensor,
    targets: Tensor,
    *,
    weighting: ClassWeighting = "sum",
) -> Tensor:
    """Class-conditional W2 (KD²M's CW2(E)): per-class empirical W2², combined over classes.

    For each class c in the batch, ``d_c = W2²({z_S,i : y_i = c}, {z_T,j : y_j = c})`` (exact
    OT between the n_c student and n_c teacher features of that class), then
    ``Σ_c w_c d_c`` with the weights of `ClassWeighting`. The default ``"sum"`` is the
    unweighted sum over the labels present in the batch, as in the KD²M code
    (``empirical_conditional_w2``); ``"proportional"`` equals ``w2_joint`` with β = ∞.

    Args:
        student_features: ``(B, D)``.
        teacher_features: ``(B, D)``, constants.
        targets: ``(B,)`` integer labels, shared by student and teacher rows.
        weighting: ``"sum"``, ``"mean"`` or ``"proportional"``.

    Returns:
        Scalar.
    """
    name = "w2_class_conditional"
    student, teacher = _as_float(student_features, teacher_features)
    _check_choice(name, "weighting", weighting, CLASS_WEIGHTINGS)
    cost = squared_distances(student, teacher)
    cost_np = _to_numpy(cost)
    labels = targets.detach().cpu().numpy()
    classes = np.unique(labels)
    plan = np.zeros_like(cost_np)
    for c in classes:
        index = np.flatnonzero(labels == c)
        block = np.ix_(index, index)
        weight = _class_weight(weighting, len(index), len(classes), len(labels))
        plan[block] = weight * _exact_plan(cost_np[block])
    return (_plan_to(plan, cost) * cost).sum()


@_feature_loss("w2_joint", uses_targets=True)
def w2_joint(
    student_features: Tensor,
    teacher_features: Tensor,
    targets: Tensor,
    *,
    beta: Annotated[float, NON_NEGATIVE] = math.inf,
) -> Tensor:
    """Joint feature–label W2 (KD²M's JW2(E)): OT with cost ``‖z_S,i − z_T,j‖² + β·[y_i ≠ y_j]``.

    The exact plan between the uniform measures on the (feature, label) pairs of the two
    batches; the value is ``Σ_ij P_ij (‖z_S,i − z_T,j‖² + β·[y_i ≠ y_j])``. β = 0 is
    `w2_empirical`. The default β = ∞ means labels must match: it is applied as
    ``β = 2·max_ij C_ij + 1``, more than any saving in feature cost from moving mass
    across classes can be worth, so the plan never does (the student and teacher rows
    share their labels, so each class has equal mass on both sides); the value is then
    ``Σ_c (n_c/B) W2²(class c)``, i.e. `w2_class_conditional` with
    ``weighting="proportional"``. A finite β lets mass cross classes at that price.

    Args:
        student_features: ``(B, D)``.
        teacher_features: ``(B, D)``, constants.
        targets: ``(B,)`` integer labels, shared by student and teacher rows.
        beta: label-mismatch price β ≥ 0, in squared feature units; ``inf`` (default):
            labels must match.

    Returns:
        Scalar.
    """
    student, teacher = _as_float(student_features, teacher_features)
    cost = squared_distances(student, teacher)
    labels = targets.to(cost.device)
    mismatch = (labels.unsqueeze(1) != labels.unsqueeze(0)).to(cost.dtype)
    if math.isinf(beta):
        beta = 2.0 * float(cost.detach().max()) + 1.0
    joint = cost + beta * mismatch
    plan = _plan_to(_exact_plan(_to_numpy(joint)), joint)
    return (plan * joint).sum()


@_feature_loss("gaussian_w2", uses_targets=False)
def gaussian_w2(
    student_features: Tensor,
    teacher_features: Tensor,
    targets: Tensor,
    *,
    covariance: Covariance = "diagonal",
) -> Tensor:
    """Bures–Wasserstein W2² between Gaussians fitted to the two batches (KD²M's W2(G)).

    ``‖μ_S − μ_T‖² + Tr(Σ_S + Σ_T − 2(Σ_S^{1/2} Σ_T Σ_S^{1/2})^{1/2})`` with batch means
    and 1/B covariances (`fit_gaussian`); for ``"diagonal"`` (the KD²M code's choice, the
    default) this is ``‖μ_S − μ_T‖² + ‖σ_S − σ_T‖²``. Matrix square roots come from
    symmetric eigendecompositions; see `bures_wasserstein_squared` and `floored_sqrt` for
    the eigenvalue floor that keeps rank-deficient (B ≤ D) covariances differentiable.

    Args:
        student_features: ``(B, D)``.
        teacher_features: ``(B, D)``, constants.
        targets: ``(B,)`` labels (unused).
        covariance: ``"diagonal"`` (D variances) or ``"full"`` (D × D covariance).

    Returns:
        Scalar.
    """
    student, teacher = _as_float(student_features, teacher_features)
    _check_choice("gaussian_w2", "covariance", covariance, COVARIANCES)
    mean_s, cov_s = fit_gaussian(student, covariance)
    mean_t, cov_t = fit_gaussian(teacher, covariance)
    return bures_wasserstein_squared(mean_s, cov_s, mean_t, cov_t, covariance)


@_feature_loss("gaussian_w2_class_conditional", uses_targets=True)
def gaussian_w2_class_conditional(
    student_features: Tensor,
    teacher_features: Tensor,
    targets: Tensor,
    *,
    covariance: Covariance = "diagonal",
    weighting: ClassWeighting = "sum",
) -> Tensor:
    """Class-conditional Gaussian W2 (KD²M's CW2(G)): `gaussian_w2` per class, combined.

    For each class c in the batch, the Bures W2² between the Gaussians fitted to the n_c
    student and the n_c teacher features of class c (a class seen once has zero variance
    and contributes its squared mean difference), combined with the weights of
    `ClassWeighting` (default ``"sum"``, as the KD²M code). With ``"full"`` this costs two
    D × D eigendecompositions per class in the batch; ``"diagonal"`` costs a few reductions.

    Args:
        student_features: ``(B, D)``.
        teacher_features: ``(B, D)``, constants.
        targets: ``(B,)`` integer labels, shared by student and teacher rows.
        covariance: ``"diagonal"`` or ``"full"``.
        weighting: ``"sum"``, ``"mean"`` or ``"proportional"``.

    Returns:
        Scalar.
    """
    name = "gaussian_w2_class_conditional"
    student, teacher = _as_float(student_features, teacher_features)
    _check_choice(name, "covariance", covariance, COVARIANCES)
    _check_choice(name, "weighting", weighting, CLASS_WEIGHTINGS)
    _, labels, counts = torch.unique(targets, return_inverse=True, return_counts=True)
    labels = labels.to(student.device)
    num_classes = counts.numel()
    mean_s, cov_s = fit_class_gaussians(student, labels, num_classes, covariance)
    mean_t, cov_t = fit_class_gaussians(teacher, labels, num_classes, covariance)
    per_class = bures_wasserstein_squared(mean_s, cov_s, mean_t, cov_t, covariance)
    if weighting == "sum":
        return per_class.sum()
    if weighting == "mean":
        return per_class.mean()
    return (per_class * counts.to(per_class)).sum() / student.shape[0]


@_feature_loss("gaussian_kl", uses_targets=False)
def gaussian_kl(
    student_features: Tensor,
    teacher_features: Tensor,
    targets: Tensor,
    *,
    covariance: Covariance = "diagonal",
    direction: Literal["student_teacher", "teacher_student"] = "student_teacher",
    ridge: Annotated[float, NON_NEGATIVE] = GAUSSIAN_KL_RIDGE,
) -> Tensor:
    """KL divergence between Gaussians fitted to the two batches (KD²M's KL(G)).

    ``direction="student_teacher"`` (default, as the KD²M code) is KL(N_S ‖ N_T);
    ``"teacher_student"`` is KL(N_T ‖ N_S). Batch means and 1/B covariances, each
    variance (or covariance diagonal) increased by ``ridge``; see `gaussian_kl_divergence`.

    Args:
        student_features: ``(B, D)``.
        teacher_features: ``(B, D)``, constants.
        targets: ``(B,)`` labels (unused).
        covariance: ``"diagonal"`` (default) or ``"full"``. Full needs B > D, or a ridge
            that dominates the empty directions, to be meaningful.
        direction: ``"student_teacher"`` or ``"teacher_student"``.
        ridge: added to variances before inverses and logs, ≥ 0 (default 1e-6, in squared
            feature units).

    Returns:
        Scalar, in nats.
    """
    student, teacher = _as_float(student_features, teacher_features)
    _check_choice("gaussian_kl", "covariance", covariance, COVARIANCES)
    _check_choice("gaussian_kl", "direction", direction, ("student_teacher", "teacher_student"))
    mean_s, cov_s = fit_gaussian(student, covariance)
    mean_t, cov_t = fit_gaussian(teacher, covariance)
    if direction == "student_teacher":
        return gaussian_kl_divergence(mean_s, cov_s, mean_t, cov_t, covariance, ridge)
    return gaussian_kl_divergence(mean_t, cov_t, mean_s, cov_s, covariance, ridge)


@_feature_loss("mmd", uses_targets=False)
def mmd(
    student_features: Tensor,
    teacher_features: Tensor,
    targets: Tensor,
    *,
    bandwidths: tuple[float, ...] | None = None,
    median_multipliers: tuple[float, ...] = (1.0,),
    unbiased: bool = False,
) -> Tensor:
    """Squared MMD with a sum of Gaussian kernels ``k(x, y) = Σ_σ exp(−‖x − y‖² / (2σ²))``.

    Biased (V-statistic) estimate ``mean K_SS + mean K_TT − 2 mean K_ST`` (≥ 0, and 0 for
    identical batches), or with ``unbiased=True`` the U-statistic that leaves the diagonals
    out of ``K_SS`` and ``K_TT`` (unbiased for MMD², can be negative).

    Args:
        student_features: ``(B, D)``.
        teacher_features: ``(B, D)``, constants.
        targets: ``(B,)`` labels (unused).
        bandwidths: the σ's, in feature units. None (default): the median heuristic,
            ``σ = m · median distance`` between distinct points of the pooled 2B features
            (detached), one kernel per m in ``median_multipliers``.
        median_multipliers: the m's of the median heuristic (only with ``bandwidths=None``).
        unbiased: use the U-statistic.

    Returns:
        Scalar.
    """
    student, teacher = _as_float(student_features, teacher_features)
    if bandwidths is not None and tuple(median_multipliers) != (1.0,):
        raise ConfigError(
            "mmd: give either bandwidths or median_multipliers (the median heuristic), not both"
        )
    scales = tuple(median_multipliers) if bandwidths is None else tuple(bandwidths)
    if not scales or not all(s > 0 and math.isfinite(s) for s in scales):
        which = "median_multipliers" if bandwidths is None else "bandwidths"
        raise ConfigError(f"mmd {which} must be a non-empty list of positive numbers, got {scales}")
    batch = student.shape[0]
    pooled = torch.cat([student, teacher])
    sq_dist = squared_distances(pooled, pooled)
    if bandwidths is None:
        median = _median_distance(sq_dist.detach())
        sigmas = [m * median for m in scales]
    else:
        sigmas = list(scales)
    kernel = sum(torch.exp(-sq_dist / (2.0 * sigma**2)) for sigma in sigmas)
    k_ss, k_tt, k_st = kernel[:batch, :batch], kernel[batch:, batch:], kernel[:batch, batch:]
    if unbiased:
        off = batch * (batch - 1)
        within = (k_ss.sum() - k_ss.diagonal().sum() + k_tt.sum() - k_tt.diagonal().sum()) / off
        return within - 2 * k_st.mean()
    return k_ss.mean() + k_tt.mean() - 2 * k_st.mean()


def squared_distances(x: Tensor, y: Tensor) -> Tensor:
    """Pairwise ``‖x_i − y_j‖²``: ``(n, D), (m, D) → (n, m)``.

    ``‖x‖² + ‖y‖² − 2 x·y`` after subtracting the (detached) mean of y from both, which
    leaves the distances unchanged but keeps the cancellation small when features share a
    large offset; clamped at 0 against rounding.
    """
    centre = y.detach().mean(dim=0)
    x, y = x - centre, y - centre
    sq = x.pow(2).sum(dim=1).unsqueeze(1) + y.pow(2).sum(dim=1).unsqueeze(0) - 2 * x @ y.T
    return sq.clamp_min(0)


def _exact_plan(cost: np.ndarray) -> np.ndarray:
    """Optimal plan between uniform weights for a (n, n) float64 cost, by ``ot.emd``."""
    n = cost.shape[0]
    if n == 1:
        return np.ones((1, 1))
    weights = np.full(n, 1.0 / n)
    import ot

    plan, log = ot.emd(weights, weights, np.ascontiguousarray(cost), EMD_MAX_ITERATIONS, log=True)
    if log.get("warning"):
        warnings.warn(
            f"exact OT (ot.emd) between {n} points did not finish: {log['warning']}; the "
            "W2 value is approximate",
            RuntimeWarning,
            stacklevel=3,
        )
    return plan


def _to_numpy(cost: Tensor) -> np.ndarray:
    return cost.detach().to(device="cpu", dtype=torch.float64).numpy()


def _plan_to(plan: np.ndarray, like: Tensor) -> Tensor:
    return torch.from_numpy(plan).to(device=like.device, dtype=like.dtype)


def _class_weight(weighting: str, count: int, num_classes: int, batch: int) -> float:
    if weighting == "sum":
        return 1.0
    if weighting == "mean":
        return 1.0 / num_classes
    return count / batch


def _median_distance(sq_dist: Tensor) -> float:
    """Median of the positive pairwise distances (i < j); 1.0 if all points coincide."""
    upper = torch.triu_indices(sq_dist.shape[0], sq_dist.shape[1], offset=1, device=sq_dist.device)
    values = sq_dist[upper[0], upper[1]]
    values = values[values > 0]
    if values.numel() == 0:
        return 1.0  # every kernel value is 1 whatever σ: MMD is 0
    return float(values.median().sqrt())


def _as_float(student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    """Student and teacher features in a common float dtype (at least float32), the teacher
    detached and on the student's device."""
    dtype = torch.promote_types(student.dtype, teacher.dtype)
    if not dtype.is_floating_point or torch.finfo(dtype).bits < 32:
        dtype = torch.float32
    return student.to(dtype), teacher.detach().to(dtype=dtype, device=student.device)


def _check_choice(name: str, option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"feature loss '{name}': {option} must be one of {', '.join(map(repr, allowed))}, "
            f"got {value!r}"
        )
