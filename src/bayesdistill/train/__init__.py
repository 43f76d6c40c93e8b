"""Training: SGD on in-memory data with per-epoch metrics, atomic checkpoints and resume."""

from bayesdistill.train.batches import Batch, TensorBatches
from bayesdistill.train.distill import distill
from bayesdistill.train.loop import FitResult, fit, sgd_step
from bayesdistill.train.optim import LRFactor, build_optimizer, build_scheduler
from bayesdistill.train.settings import OptimizerName, ScheduleName, TrainSettings
from bayesdistill.train.targets import CachedTargets, OnlineTargets, predict_in_batches

__all__ = [
    "Batch",
    "CachedTargets",
    "FitResult",
    "LRFactor",
    "OnlineTargets",
    "OptimizerName",
    "ScheduleName",
    "TensorBatches",
    "TrainSettings",
    "build_optimizer",
    "build_scheduler",
    "distill",
    "fit",
    "predict_in_batches",
    "sgd_step",
]
