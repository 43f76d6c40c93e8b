"""Variance-reduced self-distillation: the SVRG estimator, checked against autograd by hand."""

from __future__ import annotations

import copy
import dataclasses
import functools

import pytest
import torch
import torch.nn.functional as F

from bayesdistill.errors import ConfigError
from bayesdistill.losses import LOSSES, self_distill
from bayesdistill.models import create_model
from bayesdistill.seeding import seeded
from bayesdistill.teachers import DeterministicTeacher, EnsembleTeacher
from bayesdistill.train import TrainSettings, distill
from bayesdistill.train.objective import LogitLoss, LossTerm, StepInputs
from bayesdistill.train.variance_reduction import SVRGCorrection, full_gradient

from ..conftest import make_mlp


def _linear(splits, seed):
    with seeded(seed):
        return create_model("linear", splits.input_shape, splits.num_classes).double()


def _grads(loss, model):
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))])


def _vr_objective(teacher, data, lam):
    loss = LogitLoss(functools.partial(self_distill, lam=lam), ("epoch",))
    return SVRGCorrection(loss, full_gradient(teacher, data), lam, 0.0)


def _inputs(teacher, x, y):
    probs = torch.softmax(teacher(x), 1).detach()
    return StepInputs(x, y, torch.arange(len(y)), probs, 1.0)


def test_gradient_is_the_svrg_estimator_for_linear_softmax(tiny_splits):
    """g_n(x) = ∇f_n(x) − λ∇f_n(θ) + λ∇f(θ) (Safaryan et al. §3), exactly at T = 1."""
    data = dataclasses.replace(tiny_splits.train, x=tiny_splits.train.x.double())
    teacher, student, lam = _linear(tiny_splits, 0), _linear(tiny_splits, 1), 0.6
    x, y = data.x[:7], data.y[:7]
    loss, _ = _vr_objective(teacher, data, lam)(student, _inputs(teacher, x, y))
    got = _grads(loss, student)

    grad_student = _grads(F.cross_entropy(student(x), y), student)
    grad_teacher_batch = _grads(F.cross_entropy(teacher(x), y), teacher)
    grad_teacher_full = _grads(F.cross_entropy(teacher(data.x), data.y), teacher)
    expected = grad_student - lam * grad_teacher_batch + lam * grad_teacher_full
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # the logged value is the self-distillation loss itself
    plain = self_distill(student(x), _inputs(teacher, x, y).teacher_probs, y, lam=lam)
    assert float(loss.detach()) == pytest.approx(float(plain.detach()), rel=1e-12)


def test_at_the_teacher_with_lambda_one_every_example_gives_the_full_gradient(tiny_splits):
    """Zero variance at x = θ, λ = 1: each per-example estimate equals ∇f(θ)."""
    data = dataclasses.replace(tiny_splits.train, x=tiny_splits.train.x.double())
    teacher = _linear(tiny_splits, 0)
    student = copy.deepcopy(teacher)
    objective = _vr_objective(teacher, data, 1.0)
    full = _grads(F.cross_entropy(teacher(data.x), data.y), teacher)
    for n in range(5):
        x, y = data.x[n : n + 1], data.y[n : n + 1]
        loss, _ = objective(student, _inputs(teacher, x, y))
        torch.testing.assert_close(_grads(loss, student), full, rtol=1e-10, atol=1e-12)
    # without the correction the per-example gradients vanish instead (they are not ∇f(θ))
    x, y = data.x[:1], data.y[:1]
    plain = self_distill(student(x), _inputs(teacher, x, y).teacher_probs, y, lam=1.0)
    assert _grads(plain, student).abs().max() < 1e-12 < full.abs().max()


def test_distill_trains_with_it_and_differs_from_plain_self_distillation(tiny_splits, trained_mlp):
    settings = TrainSettings(epochs=2, batch_size=32, lr=0.1)
    results = {}
    for name in ("self_distill", "self_distill_vr"):
        student = make_mlp(tiny_splits, seed=3)
        distill(
            student,
            tiny_splits.train,
            DeterministicTeacher(trained_mlp),
            loss=name,
            loss_options={"lam": 0.5},
            settings=settings,
            progress=False,
        )
        results[name] = torch.cat([p.detach().flatten() for p in student.parameters()])
    assert not torch.allclose(results["self_distill"], results["self_distill_vr"])
    assert LOSSES.entry("self_distill_vr").summary.startswith("Variance-reduced")


def test_refusals_name_the_problem(tiny_splits, trained_mlp):
    teacher = DeterministicTeacher(trained_mlp)
    other = make_mlp(tiny_splits, hidden=(8,))
    with pytest.raises(ConfigError, match="student's architecture.*differ"):
        distill(other, tiny_splits.train, teacher, loss="self_distill_vr", progress=False)
    ensemble = EnsembleTeacher([teacher, teacher])
    with pytest.raises(ConfigError, match="kind '.*' has none"):
        distill(
            make_mlp(tiny_splits),
            tiny_splits.train,
            ensemble,
            loss="self_distill_vr",
            progress=False,
        )
    with pytest.raises(ConfigError, match="cannot be a term of a weighted sum"):
        distill(
            make_mlp(tiny_splits),
            tiny_splits.train,
            teacher,
            loss=[LossTerm("self_distill_vr"), LossTerm("kd")],
            progress=False,
        )
