"""Figures of a study: student learning curves with a band over seeds, teacher reliability."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import numpy as np
import torch

from bayesdistill.io import save_figure
from bayesdistill.metrics import calibration_bins, ece
from bayesdistill.reports.collect import NO_TEACHER, StudyResults

DPI = 130


def plot_learning_curves(results: StudyResults, path: Path, metric: str = "test_accuracy") -> bool:
    """Mean ± std band over seeds of each student's ``metric`` against epoch, one panel per loss."""
    if not results.curves:
        return False
    n = len(results.losses)
    fig, axes = plt.subplots(1, n, figsize=(7.0 * n, 4.5), squeeze=False, sharey=True)
    for ax, loss in zip(axes.flat, results.losses, strict=True):
        _curves_panel(ax, results, loss, metric)
    fig.tight_layout()
    save_figure(path, fig, dpi=DPI)
    plt.close(fig)
    return True


def _curves_panel(ax: plt.Axes, results: StudyResults, loss: str, metric: str) -> None:
    for kind in results.kinds:
        per_seed = results.curve(loss, kind)
        if not per_seed:
            continue
        length = min(len(c) for c in per_seed.values())
        if length == 0:
            continue
        epochs = np.array([r["epoch"] for r in next(iter(per_seed.values()))[:length]])
        values = 100 * np.array([[r[metric] for r in c[:length]] for c in per_seed.values()])
        mean, std = values.mean(0), values.std(0)
        label = "one-hot (none)" if results.kind_names[kind] == NO_TEACHER else kind
        (line,) = ax.plot(epochs, mean, label=label, lw=1.6)
        if len(values) > 1:
            ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.18)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric.replace("_", " ") + " (%)")
    ax.set_title(f"students, loss {loss} (mean ± std, {len(results.seeds)} seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_reliability(results: StudyResults, path: Path, num_bins: int = 15) -> bool:
    """One reliability diagram per teacher kind, test predictions pooled over seeds."""
    kinds = [k for k in results.kinds if results.teacher_probs.get(k)]
    if not kinds:
        return False
    cols = min(3, len(kinds))
    rows = math.ceil(len(kinds) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.3 * rows), squeeze=False)
    edges = np.linspace(0, 1, num_bins + 1)
    for ax, kind in zip(axes.flat, kinds, strict=False):
        probs = torch.cat([p for p, _ in results.teacher_probs[kind]])
        labels = torch.cat([y for _, y in results.teacher_probs[kind]])
        count, conf, acc = (t.numpy() for t in calibration_bins(probs, labels, num_bins))
        filled = count > 0
        left, width = edges[:-1][filled], 1 / num_bins
        ax.bar(
            left,
            acc[filled],
            width=width,
            align="edge",
            color="tab:blue",
            alpha=0.85,
            edgecolor="black",
            lw=0.5,
            label="accuracy",
        )
        # the gap between accuracy and mean confidence, on whichever side it lies
        ax.bar(
            left,
            np.abs(conf - acc)[filled],
            bottom=np.minimum(conf, acc)[filled],
            width=width,
            align="edge",
            color="tab:red",
            alpha=0.25,
            hatch="//",
            edgecolor="tab:red",
            lw=0.5,
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_title(f"{kind}  (ECE {ece(probs, labels, num_bins):.3f})", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
    for ax in list(axes.flat)[len(kinds) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.suptitle("Teacher reliability (test set, all seeds)", fontsize=10)
    fig.tight_layout()
    save_figure(path, fig, dpi=DPI)
    plt.close(fig)
    return True


def plot_teacher_vs_student(results: StudyResults, path: Path) -> bool:
    """Student accuracy against its teacher's test NLL and ECE, one point per seed (first loss)."""
    points = []
    loss = results.losses[0] if results.losses else None
    for kind in results.kinds:
        for seed in results.seeds:
            t_nll = results.value("teacher", kind, seed, "nll")
            t_ece = results.value("teacher", kind, seed, "ece")
            s_acc = results.value("student", kind, seed, "accuracy", loss)
            if None not in (t_nll, t_ece, s_acc):
                points.append((kind, t_nll, t_ece, 100 * s_acc))  # type: ignore[operator]
    if not points:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    for kind in results.kinds:
        pts = [p for p in points if p[0] == kind]
        if pts:
            axes[0].scatter([p[1] for p in pts], [p[3] for p in pts], label=kind, s=22)
            axes[1].scatter([p[2] for p in pts], [p[3] for p in pts], label=kind, s=22)
    axes[0].set_xlabel("teacher test NLL")
    axes[1].set_xlabel("teacher test ECE")
    axes[0].set_ylabel("student test accuracy (%)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Does teacher calibration predict the student? (loss {loss})", fontsize=10)
    fig.tight_layout()
    save_figure(path, fig, dpi=DPI)
    plt.close(fig)
    return True
