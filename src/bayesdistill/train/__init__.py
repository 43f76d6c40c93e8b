"""Training: SGD on in-memory data with per-epoch metrics, atomic checkpoints and resume;
step objectives (one loss or a weighted sum of loss and feature-loss terms); the `Teacher`
protocol that distillation consumes (teachers, built on this layer, implement it)."""

from bayesdistill.train.accel import Acceleration, vectorized_samples
from bayesdistill.train.batches import Batch, TensorBatches
from bayesdistill.train.distill import LossSpec, distill
from bayesdistill.train.features import (
    OnlineFeatures,
    check_feature_dims,
    feature_network,
    features_in_batches,
)
from bayesdistill.train.loop import FitResult, fit, sgd_step
from bayesdistill.train.objective import (
    LogitLoss,
    LossFn,
    LossTerm,
    Objective,
    StepInputs,
    WeightedSum,
    check_terms,
)
from bayesdistill.train.optim import LRFactor, build_optimizer, build_scheduler
from bayesdistill.train.protocol import Teacher, check_teacher_matches
from bayesdistill.train.run_options import DEFAULT_RUN, RunOptions
from bayesdistill.train.settings import OptimizerName, ScheduleName, TrainSettings
from bayesdistill.train.targets import CachedTargets, OnlineTargets, predict_in_batches

__all__ = [
    "DEFAULT_RUN",
    "Acceleration",
    "Batch",
    "CachedTargets",
    "FitResult",
    "LRFactor",
    "LogitLoss",
    "LossFn",
    "LossSpec",
    "LossTerm",
    "Objective",
    "OnlineFeatures",
    "OnlineTargets",
    "OptimizerName",
    "RunOptions",
    "ScheduleName",
    "StepInputs",
    "Teacher",
    "TensorBatches",
    "TrainSettings",
    "WeightedSum",
    "build_optimizer",
    "build_scheduler",
    "check_feature_dims",
    "check_teacher_matches",
    "check_terms",
    "distill",
    "feature_network",
    "features_in_batches",
    "fit",
    "predict_in_batches",
    "sgd_step",
    "vectorized_samples",
]
