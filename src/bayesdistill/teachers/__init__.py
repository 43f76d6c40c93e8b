"""Teachers: everything that gives class probabilities, behind one protocol.

`TEACHERS` registers *builders*: ``builder(context, **options) -> Teacher``. The context
holds what a builder may use (the trained network, the data, a seed); the keyword-only
options are what a config sets. Built teachers save to one file and reload with
`load_teacher`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch

from bayesdistill.errors import ConfigError
from bayesdistill.teachers.base import (
    NetworkTeacher,
    SavableTeacher,
    Teacher,
    check_teacher_matches,
    load_teacher,
)
from bayesdistill.teachers.baselines import (
    MCMITeacher,
    MSETeacher,
    brier_loss,
    class_centroids,
    conditional_mutual_information,
    finetune_mcmi,
    train_mse_teacher,
)
from bayesdistill.teachers.bayes import ExactBayesTeacher, NoiseKind, NoisyBayesTeacher
from bayesdistill.teachers.builders import ENSEMBLE_STREAM
from bayesdistill.teachers.context import TEACHERS, TeacherContext, needs_network
from bayesdistill.teachers.cross_fit import (
    CrossFitPlan,
    CrossFitPredictor,
    CrossFittedTeacher,
    cross_fit,
    stratified_folds,
    training_targets,
)
from bayesdistill.teachers.deterministic import (
    DeterministicTeacher,
    TemperatureTeacher,
    fit_temperature,
)
from bayesdistill.teachers.ensemble import EnsembleTeacher
from bayesdistill.teachers.ivon import IVONTeacher, ivon_posterior_std, ivon_step, train_ivon
from bayesdistill.teachers.laplace import (
    HessianStructure,
    LaplaceTeacher,
    LinkApprox,
    PredType,
    PriorMethod,
    SubsetOfWeights,
    fit_laplace,
)
from bayesdistill.teachers.mc_dropout import MCDropoutTeacher
from bayesdistill.teachers.tempered import TemperedTeacher, calibrate
from bayesdistill.teachers.variational import (
    Estimator,
    MeanFieldLayer,
    MeanFieldTeacher,
    kl_weight,
    network_kl,
    to_mean_field,
    train_mfvi,
)
from bayesdistill.train.batches import iterate
from bayesdistill.train.settings import TrainSettings


@TEACHERS.register("deterministic", needs_network=True)
def build_deterministic(context: TeacherContext) -> DeterministicTeacher:
    """The trained network's softmax (point estimate)."""
    return DeterministicTeacher(context.need_network("deterministic"))


@TEACHERS.register("temperature", needs_network=True)
def build_temperature(context: TeacherContext) -> TemperatureTeacher:
    """The trained network with one temperature fitted on validation NLL (Guo et al. 2017)."""
    network = context.need_network("temperature")
    device = next(network.parameters()).device
    network.eval()
    with torch.no_grad():
        pairs = [(network(x), y) for x, y in iterate(context.splits.val, device)]
    logits, labels = zip(*pairs, strict=True)
    return TemperatureTeacher(network, fit_temperature(torch.cat(logits), torch.cat(labels)))


@TEACHERS.register("laplace", needs_network=True)
def build_laplace(
    context: TeacherContext,
    *,
    subset_of_weights: SubsetOfWeights = SubsetOfWeights.LAST_LAYER,
    hessian_structure: HessianStructure = HessianStructure.KRON,
    prior_precision: PriorMethod | float = PriorMethod.GRIDSEARCH,
    prior_structure: Literal["scalar", "layerwise", "diag"] = "scalar",
    grid_log10_min: float = -4.0,
    grid_log10_max: float = 4.0,
    grid_points: int = 41,
    pred_type: PredType = PredType.GLM,
    link_approx: LinkApprox = LinkApprox.PROBIT,
    n_samples: int = 100,
) -> LaplaceTeacher:
    """Post-hoc Laplace approximation of the trained network (laplace-torch)."""
    return fit_laplace(
        context.need_network("laplace"),
        context.splits.train,
        context.splits.val,
        subset_of_weights=subset_of_weights,
        hessian_structure=hessian_structure,
        prior_precision=prior_precision,
        prior_structure=prior_structure,
        grid=(grid_log10_min, grid_log10_max, grid_points),
        pred_type=pred_type,
        link_approx=link_approx,
        n_samples=n_samples,
        seed=context.seed,
    )


@TEACHERS.register("ivon", needs_network=True)
def build_ivon(
    context: TeacherContext,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float = 0.1,
    beta1: float = 0.9,
    beta2: float = 0.99999,
    weight_decay: float = 1e-4,
    hess_init: float = 0.1,
    ess: float | None = None,
    mc_samples: int = 1,
    num_samples: int = 10,
) -> IVONTeacher:
    """Variational (mean-field Gaussian) network trained from the same init with IVON."""
    if context.init_network is None:
        raise ConfigError("teacher 'ivon' trains a network and needs context.init_network")
    base = context.train_settings or TrainSettings()
    settings = replace(
        base,
        epochs=epochs or base.epochs,
        batch_size=batch_size or base.batch_size,
        lr=lr,
        momentum=beta1,
        weight_decay=weight_decay,
        nesterov=False,
    )
    teacher, _ = train_ivon(
        context.init_network(),
        context.splits.train,
        settings=settings,
        seed=context.seed,
        ess=ess,
        hess_init=hess_init,
        beta2=beta2,
        mc_samples=mc_samples,
        num_samples=num_samples,
        **context.training_options(),
    )
    return teacher


@TEACHERS.register("exact_bcp", needs_network=False)
def build_exact_bcp(context: TeacherContext) -> ExactBayesTeacher:
    """The exact Bayes class probabilities p*(y|x) (synthetic data only)."""
    return ExactBayesTeacher(context.need_mixture("exact_bcp"), context.splits.standardizer)


@TEACHERS.register("noisy_bcp", needs_network=False)
def build_noisy_bcp(
    context: TeacherContext, *, noise: NoiseKind = NoiseKind.DIRICHLET, level: float = 5.0
) -> NoisyBayesTeacher:
    """p* with per-example Dirichlet(a·p*) (level = a) or additive N(0, ν) noise (level = ν)."""
    return NoisyBayesTeacher(
        context.need_mixture("noisy_bcp"),
        context.splits.standardizer,
        noise=noise,
        level=level,
        seed=context.seed,
    )


__all__ = [
    "ENSEMBLE_STREAM",
    "TEACHERS",
    "CrossFitPlan",
    "CrossFitPredictor",
    "CrossFittedTeacher",
    "DeterministicTeacher",
    "EnsembleTeacher",
    "Estimator",
    "ExactBayesTeacher",
    "HessianStructure",
    "IVONTeacher",
    "LaplaceTeacher",
    "LinkApprox",
    "MCDropoutTeacher",
    "MCMITeacher",
    "MSETeacher",
    "MeanFieldLayer",
    "MeanFieldTeacher",
    "NetworkTeacher",
    "NoiseKind",
    "NoisyBayesTeacher",
    "PredType",
    "PriorMethod",
    "SavableTeacher",
    "SubsetOfWeights",
    "Teacher",
    "TeacherContext",
    "TemperatureTeacher",
    "TemperedTeacher",
    "brier_loss",
    "calibrate",
    "check_teacher_matches",
    "class_centroids",
    "conditional_mutual_information",
    "cross_fit",
    "finetune_mcmi",
    "fit_laplace",
    "fit_temperature",
    "ivon_posterior_std",
    "ivon_step",
    "kl_weight",
    "load_teacher",
    "needs_network",
    "network_kl",
    "stratified_folds",
    "to_mean_field",
    "train_ivon",
    "train_mfvi",
    "train_mse_teacher",
    "training_targets",
]
