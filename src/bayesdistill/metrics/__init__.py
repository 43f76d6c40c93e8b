"""Metrics: accuracy, top-k accuracy, NLL, ECE, Brier, distance to the exact BCPs, learning
curves (fluctuation, best evaluation point), ROC AUC."""

from bayesdistill.metrics.classification import (
    ECE_BINS,
    NLL_EPS,
    TOP5,
    TOP5_MIN_CLASSES,
    accuracy,
    brier,
    calibration_bins,
    classification_metrics,
    ece,
    l2_to_bcp,
    mean_entropy,
    mean_total_variation,
    nll,
    top_k_accuracy,
)
from bayesdistill.metrics.curves import BestPoint, best_point, fluctuation, moving_average
from bayesdistill.metrics.ranking import roc_auc

__all__ = [
    "ECE_BINS",
    "NLL_EPS",
    "TOP5",
    "TOP5_MIN_CLASSES",
    "BestPoint",
    "accuracy",
    "best_point",
    "brier",
    "calibration_bins",
    "classification_metrics",
    "ece",
    "fluctuation",
    "l2_to_bcp",
    "mean_entropy",
    "mean_total_variation",
    "moving_average",
    "nll",
    "roc_auc",
    "top_k_accuracy",
]
