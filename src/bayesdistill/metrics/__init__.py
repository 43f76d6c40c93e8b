"""Metrics: accuracy, NLL, ECE, Brier, distance to the exact BCPs, curve fluctuation, ROC AUC."""

from bayesdistill.metrics.classification import (
    ECE_BINS,
    NLL_EPS,
    accuracy,
    brier,
    calibration_bins,
    classification_metrics,
    ece,
    l2_to_bcp,
    mean_entropy,
    mean_total_variation,
    nll,
)
from bayesdistill.metrics.curves import fluctuation, moving_average
from bayesdistill.metrics.ranking import roc_auc

__all__ = [
    "ECE_BINS",
    "NLL_EPS",
    "accuracy",
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
]
