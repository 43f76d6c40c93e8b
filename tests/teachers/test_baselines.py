"""MSE (Brier) and MCMI teachers: their losses by hand, and what fine-tuning reduces to."""

from __future__ import annotations

import copy

import pytest
import torch

from bayesdistill.data import ArrayData
from bayesdistill.losses import onehot_ce
from bayesdistill.teachers import (
    MCMITeacher,
    MSETeacher,
    brier_loss,
    class_centroids,
    conditional_mutual_information,
    finetune_mcmi,
    load_teacher,
    train_mse_teacher,
)
from bayesdistill.train import RunOptions, TrainSettings, fit

from ..conftest import make_mlp

QUIET = RunOptions(progress=False)


def test_brier_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2])
    p = torch.softmax(logits, 1)
    expected = ((p[0] - torch.tensor([1.0, 0, 0])) ** 2).sum() + (
        (p[1] - torch.tensor([0, 0, 1.0])) ** 2
    ).sum()
    assert brier_loss(logits, labels).item() == pytest.approx(expected.item() / 2)


@pytest.mark.parametrize("target_space", ["softmax", "logits"])
def test_mse_teacher_is_trained_with_its_loss(tiny_splits, target_space, tmp_path):
    settings = TrainSettings(epochs=8, batch_size=32, lr=0.2)
    teacher, result = train_mse_teacher(
        make_mlp(tiny_splits),
        tiny_splits.train,
        settings=settings,
        seed=0,
        target_space=target_space,
        run=QUIET,
    )
    assert isinstance(teacher, MSETeacher) and teacher.target_space == target_space
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < losses[0]
    if target_space == "softmax":  # the logged loss is the Brier score of the network
        assert losses[0] < 2.0
    teacher.save(tmp_path / "mse.pt")
    x = tiny_splits.test.x
    assert torch.allclose(
        load_teacher(tmp_path / "mse.pt").predict_proba(x), teacher.predict_proba(x)
    )


def test_class_centroids_by_hand(trained_mlp, tiny_splits):
    data = tiny_splits.train
    centroids = class_centroids(trained_mlp, data, 3)
    probs = torch.softmax(trained_mlp.eval()(data.x), 1).detach()
    for k in range(3):
        assert torch.allclose(centroids[k], probs[data.y == k].mean(0), atol=1e-6)
    # a class without examples gets the uniform distribution
    only_zero = ArrayData(data.x[data.y == 0], data.y[data.y == 0], 3)
    assert torch.allclose(class_centroids(trained_mlp, only_zero, 3)[1], torch.full((3,), 1 / 3))


def test_conditional_mutual_information_by_hand():
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, -1.0]])
    labels = torch.tensor([0, 0, 1])
    centroids = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    p = torch.softmax(logits, 1)
    expected = sum((p[i] * (p[i] / centroids[labels[i]]).log()).sum() for i in range(3)) / 3
    got = conditional_mutual_information(logits, labels, centroids)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    # zero when every prediction equals its class centroid
    same = conditional_mutual_information(centroids.log()[labels], labels, centroids)
    assert same.item() == pytest.approx(0.0, abs=1e-7)


def test_mcmi_with_zero_weight_is_plain_fine_tuning(trained_mlp, tiny_splits):
    settings = TrainSettings(epochs=2, batch_size=32, lr=0.01)
    teacher, _ = finetune_mcmi(
        trained_mlp, tiny_splits.train, settings=settings, seed=3, cmi_weight=0.0, run=QUIET
    )
    reference = fit(
        copy.deepcopy(trained_mlp),
        tiny_splits.train,
        loss_fn=onehot_ce,
        settings=settings,
        seed=3,
        progress=False,
    ).model
    for (name, p), (_, q) in zip(
        teacher.network.named_parameters(), reference.named_parameters(), strict=True
    ):
        assert torch.allclose(p, q, atol=1e-6), name
    assert teacher.network is not trained_mlp  # the trained network is left alone


def test_mcmi_raises_the_conditional_mutual_information(trained_mlp, tiny_splits, tmp_path):
    settings = TrainSettings(epochs=3, batch_size=32, lr=0.05)
    data = tiny_splits.train

    def cmi_after(weight: float) -> tuple[float, MCMITeacher]:
        teacher, _ = finetune_mcmi(
            trained_mlp, data, settings=settings, seed=0, cmi_weight=weight, run=QUIET
        )
        logits = teacher.network.eval()(data.x).detach()
        return conditional_mutual_information(
            logits, data.y, class_centroids(teacher.network, data, 3)
        ).item(), teacher

    low, _ = cmi_after(-1.0)
    high, teacher = cmi_after(1.0)
    assert high > low
    assert isinstance(teacher, MCMITeacher) and teacher.describe()["cmi_weight"] == 1.0
    teacher.save(tmp_path / "mcmi.pt")
    x = tiny_splits.test.x
    assert torch.allclose(
        load_teacher(tmp_path / "mcmi.pt").predict_proba(x), teacher.predict_proba(x)
    )
