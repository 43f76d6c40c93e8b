"""DKD against a hand computation of its two terms, the logit formula, and its warm-up."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bayesdistill.errors import ConfigError
from bayesdistill.losses import LOSSES, dkd, dkd_terms

Z = torch.tensor(
    [[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 3.0, -2.0], [1.0, 1.5, -0.5, 0.3]], dtype=torch.float64
)
P = torch.tensor(
    [[0.6, 0.1, 0.2, 0.1], [0.2, 0.1, 0.6, 0.1], [0.05, 0.7, 0.05, 0.2]], dtype=torch.float64
)
Y = torch.tensor([0, 2, 3])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over rows of KL(p ‖ q)."""
    return float((p * (np.log(p) - np.log(q))).sum(1).mean())


def _terms_by_hand(temperature: float) -> tuple[float, float]:
    student = _softmax(Z.numpy() / temperature)
    teacher = P.numpy() ** (1 / temperature)
    teacher /= teacher.sum(1, keepdims=True)
    tckd, nckd = [], []
    for i, y in enumerate(Y.tolist()):
        b_s = np.array([[student[i, y], 1 - student[i, y]]])
        b_t = np.array([[teacher[i, y], 1 - teacher[i, y]]])
        tckd.append(_kl(b_t, b_s))
        rest_s = np.delete(student[i], y)[None]
        rest_t = np.delete(teacher[i], y)[None]
        nckd.append(_kl(rest_t / rest_t.sum(), rest_s / rest_s.sum()))
    return temperature**2 * np.mean(tckd), temperature**2 * np.mean(nckd)


@pytest.mark.parametrize("temperature", [1.0, 4.0, 0.5])
def test_terms_by_hand(temperature):
    tckd, nckd = dkd_terms(Z, P, Y, temperature=temperature)
    expected_tckd, expected_nckd = _terms_by_hand(temperature)
    assert tckd.item() == pytest.approx(expected_tckd, rel=1e-10)
    assert nckd.item() == pytest.approx(expected_nckd, rel=1e-10)


def test_loss_is_ce_plus_weighted_terms():
    tckd, nckd = _terms_by_hand(4.0)
    ce = F.cross_entropy(Z, Y).item()
    value = dkd(Z, P, Y, alpha=0.5, beta=3.0, temperature=4.0)
    assert value.item() == pytest.approx(ce + 0.5 * tckd + 3.0 * nckd, rel=1e-10)


def test_equals_the_logit_formula_for_a_softmax_teacher():
    """mdistiller's DKD on teacher logits z_T equals ours on p_T = softmax(z_T)."""
    teacher_logits = torch.tensor(
        [[3.0, 0.0, -1.0, 1.0], [-2.0, 0.5, 4.0, 0.0], [0.0, 2.0, 1.0, 2.5]], dtype=torch.float64
    )
    temperature, alpha, beta = 4.0, 1.0, 8.0
    gt = F.one_hot(Y, 4).bool()
    s = F.softmax(Z / temperature, 1)
    t = F.softmax(teacher_logits / temperature, 1)
    b_s = torch.stack([s[gt], s.masked_fill(gt, 0).sum(1)], 1)
    b_t = torch.stack([t[gt], t.masked_fill(gt, 0).sum(1)], 1)
    tckd = (b_t * (b_t.log() - b_s.log())).sum(1).mean() * temperature**2
    big = 1000.0  # mdistiller masks the target logit by subtracting 1000
    t_rest = F.softmax(teacher_logits / temperature - big * gt, 1)
    log_s_rest = F.log_softmax(Z / temperature - big * gt, 1)
    nckd = F.kl_div(log_s_rest, t_rest, reduction="sum") / len(Y) * temperature**2
    expected = F.cross_entropy(Z, Y) + alpha * tckd + beta * nckd
    value = dkd(Z, F.softmax(teacher_logits, 1), Y, alpha=alpha, beta=beta, temperature=4.0)
    assert value.item() == pytest.approx(expected.item(), rel=1e-9)


@pytest.mark.parametrize(("epoch", "weight"), [(0.0, 0.0), (10.0, 0.5), (20.0, 1.0), (35.5, 1.0)])
def test_warm_up_scales_the_distillation_terms(epoch, weight):
    ce = F.cross_entropy(Z, Y).item()
    full = dkd(Z, P, Y).item()
    assert full > ce
    assert dkd(Z, P, Y, epoch=epoch).item() == pytest.approx(ce + weight * (full - ce), rel=1e-12)


def test_default_epoch_means_warmed_up_and_zero_warm_up_means_none():
    full = dkd(Z, P, Y, epoch=math.inf).item()
    assert dkd(Z, P, Y).item() == full
    assert dkd(Z, P, Y, warmup_epochs=0.0, epoch=0.0).item() == full
    assert dkd(Z, P, Y, warmup_epochs=5.0, epoch=1.0).item() < full


def test_epoch_is_a_runtime_input_not_an_option():
    entry = LOSSES.entry("dkd")
    assert entry.tags["runtime"] == ("epoch",)
    assert [o.name for o in entry.options] == ["alpha", "beta", "temperature", "warmup_epochs"]
    with pytest.raises(ConfigError, match="no option 'epoch'"):
        LOSSES.validate_options("dkd", {"epoch": 3.0})


def test_negative_epoch_is_an_error():
    with pytest.raises(ValueError, match=r"epoch must be non-negative .*got -1.0"):
        dkd(Z, P, Y, epoch=-1.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"alpha": -1.0}, r"alpha must lie in \[0, inf\) \(non-negative\), got -1.0"),
        ({"beta": -0.5}, r"beta must lie in \[0, inf\) \(non-negative\), got -0.5"),
        ({"temperature": 0.0}, r"temperature must lie in \(0, inf\) \(positive\), got 0.0"),
        (
            {"warmup_epochs": -2.0},
            r"warmup_epochs must lie in \[0, inf\) \(non-negative\), got -2.0",
        ),
    ],
)
def test_rejects_bad_hyperparameters(options, message):
    with pytest.raises(ConfigError, match=message):
        dkd(Z, P, Y, **options)


def test_needs_two_classes():
    with pytest.raises(ConfigError, match="at least 2 classes"):
        dkd_terms(Z[:, :1], P[:, :1], torch.zeros(3, dtype=torch.long), temperature=4.0)
