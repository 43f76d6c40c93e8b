"""Teachers: everything that gives class probabilities, behind one protocol.

`TEACHERS` registers *builders*: ``builder(context, **options) -> Teacher``. The context
holds what a builder may use (the trained network, the data, a seed); the keyword-only
options are what a config sets. Each kind lives in its own module with its class, its
builder and its registry tags (`TEACHERS` lists them): `deterministic`, `temperature`,
`laplace`, `ivon`, `mc_dropout`, `variational` (``mfvi``), `ensemble`, `mse_teacher`,
`mcmi` and `bayes` (``exact_bcp``, ``noisy_bcp``). `tempered` and `cross_fit` wrap a teacher
of any kind. Built teachers save to one file and reload with `load_teacher`. A composite
teacher (ensemble, cross-fitted, tempered) names the teachers it is made of with
``children()``; `walk` visits them at every depth, ``unwrap()`` looks below a tempering.

This package only re-exports; importing it registers every kind.
"""

from __future__ import annotations

from bayesdistill.teachers.base import (
    NetworkTeacher,
    SavableTeacher,
    Teacher,
    check_teacher_matches,
    walk,
)
from bayesdistill.teachers.bayes import ExactBayesTeacher, NoiseKind, NoisyBayesTeacher
from bayesdistill.teachers.context import (
    TEACHERS,
    TeacherContext,
    kinds_tagged,
    learns_from_data,
    needs_network,
)
from bayesdistill.teachers.cross_fit import (
    CrossFitPlan,
    CrossFitPredictor,
    CrossFittedTeacher,
    cross_fit,
    stratified_folds,
    training_targets,
)
from bayesdistill.teachers.deterministic import DeterministicTeacher
from bayesdistill.teachers.ensemble import ENSEMBLE_STREAM, EnsembleTeacher
from bayesdistill.teachers.files import load_teacher, saved_kinds
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
from bayesdistill.teachers.mcmi import (
    MCMITeacher,
    class_centroids,
    conditional_mutual_information,
    finetune_mcmi,
)
from bayesdistill.teachers.mse_teacher import MSETeacher, brier_loss, train_mse_teacher
from bayesdistill.teachers.temperature import TemperatureTeacher, fit_temperature
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
    "kinds_tagged",
    "kl_weight",
    "learns_from_data",
    "load_teacher",
    "needs_network",
    "network_kl",
    "saved_kinds",
    "stratified_folds",
    "to_mean_field",
    "train_ivon",
    "train_mfvi",
    "train_mse_teacher",
    "training_targets",
    "walk",
]
