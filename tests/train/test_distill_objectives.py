"""`distill` with warming-up losses, weighted sums and feature terms, checked by hand."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from bayesdistill.data import ArrayData
from bayesdistill.data.augment import GaussianNoise
from bayesdistill.errors import ConfigError
from bayesdistill.io import JsonLines
from bayesdistill.losses import dkd, kd, w2_empirical
from bayesdistill.models import create_model
from bayesdistill.seeding import seeded
from bayesdistill.teachers import DeterministicTeacher, EnsembleTeacher, TemperedTeacher
from bayesdistill.train import TrainSettings, distill
from bayesdistill.train.batches import TensorBatches
from bayesdistill.train.features import feature_network, features_in_batches
from bayesdistill.train.objective import LossTerm

from ..conftest import interrupt_after, make_mlp

BATCH = 32


def _per_step_settings(splits, epochs: int = 1, **overrides) -> TrainSettings:
    """Plain SGD with one evaluation point per step, so every record is one step's loss."""
    steps = math.ceil(len(splits.train) / BATCH)
    options = {
        "epochs": epochs,
        "batch_size": BATCH,
        "lr": 0.1,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "schedule": "constant",
        "evals_per_epoch": steps,
    }
    return TrainSettings(**{**options, **overrides})


def test_dkd_gets_the_fractional_epoch_of_each_step(tiny_splits, trained_mlp):
    train = tiny_splits.train
    teacher = DeterministicTeacher(trained_mlp)
    settings = _per_step_settings(tiny_splits)
    steps = math.ceil(len(train) / BATCH)
    options = {"warmup_epochs": 1.0, "beta": 8.0}
    history = distill(
        make_mlp(tiny_splits),
        train,
        teacher,
        loss="dkd",
        loss_options=options,
        settings=settings,
        seed=7,
        progress=False,
    ).history
    assert len(history) == steps

    # the same two steps by hand: plain SGD, warm-up weight min(epoch / 1, 1)
    probs = teacher.predict_proba(train.x)
    order = TensorBatches(train, BATCH, seed=7).order(0)
    model = make_mlp(tiny_splits)
    by_hand = []
    for b in range(2):
        index = order[b * BATCH : (b + 1) * BATCH]
        logits = model(train.x[index])
        loss = dkd(logits, probs[index], train.y[index], **options, epoch=b / steps)
        by_hand.append(loss.item())
        if b == 0:  # the warm-up weight is 0 at the very first step: plain cross-entropy
            ce = F.cross_entropy(logits, train.y[index])
            assert loss.item() == pytest.approx(ce.item(), rel=1e-7)
            full = dkd(logits, probs[index], train.y[index], **options)
            assert abs(full.item() - ce.item()) > 1e-3
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
    assert history[0]["train_loss"] == pytest.approx(by_hand[0], rel=1e-6)
    assert history[1]["train_loss"] == pytest.approx(by_hand[1], rel=1e-5)
    # a different epoch would give a clearly different value
    index = order[BATCH : 2 * BATCH]
    other = dkd(model(train.x[index]), probs[index], train.y[index], **options, epoch=0.0)
    assert abs(other.item() - by_hand[1]) > 1e-4


def test_a_killed_dkd_run_resumes_to_identical_weights(tiny_splits, trained_mlp, tmp_path):
    teacher = DeterministicTeacher(trained_mlp)
    settings = TrainSettings(epochs=4, batch_size=16, lr=0.1, evals_per_epoch=2)

    def run(folder, resume=False):
        return distill(
            make_mlp(tiny_splits),
            tiny_splits.train,
            teacher,
            loss="dkd",
            loss_options={"warmup_epochs": 3.0},
            settings=settings,
            seed=3,
            run_dir=folder,
            resume=resume,
            progress=False,
        )

    full = run(tmp_path / "full")
    interrupt_after(2, lambda: run(tmp_path / "part"))
    resumed = run(tmp_path / "part", resume=True)
    assert resumed.resumed_from_epoch == 2
    for p, q in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in full.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history]


def test_weighted_sum_logs_each_term_and_their_sum(tiny_splits, trained_mlp, tmp_path):
    teacher = DeterministicTeacher(trained_mlp)
    terms = [LossTerm("kd", 1.0, {"alpha": 0.9}), LossTerm("w2_empirical", 1e-2)]
    settings = TrainSettings(epochs=2, batch_size=16, lr=0.05, evals_per_epoch=3)
    result = distill(
        make_mlp(tiny_splits),
        tiny_splits.train,
        teacher,
        loss=terms,
        settings=settings,
        seed=0,
        run_dir=tmp_path,
        progress=False,
    )
    records = JsonLines(tmp_path / "metrics.jsonl").read()
    assert len(records) == 6
    for record in records:
        assert {"train_loss/kd", "train_loss/w2_empirical"} <= set(record)
        combined = record["train_loss/kd"] + 1e-2 * record["train_loss/w2_empirical"]
        assert record["train_loss"] == pytest.approx(combined, rel=1e-5)
        assert record["train_loss/w2_empirical"] > 0
    assert result.history[-1]["train_loss/kd"] == records[-1]["train_loss/kd"]


def test_a_single_term_weighted_sum_equals_the_named_loss(tiny_splits, trained_mlp):
    teacher = DeterministicTeacher(trained_mlp)
    settings = TrainSettings(epochs=2, batch_size=16)

    def run(loss, options=None):
        return distill(
            make_mlp(tiny_splits),
            tiny_splits.train,
            teacher,
            loss=loss,
            loss_options=options,
            settings=settings,
            seed=0,
            progress=False,
        )

    a = run("kd", {"alpha": 0.7})
    b = run([LossTerm("kd", 1.0, {"alpha": 0.7})])
    assert all(
        torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True)
    )
    assert [r["train_loss"] for r in a.history] == [r["train_loss/kd"] for r in b.history]


@pytest.mark.parametrize("augment", [None, GaussianNoise(std=0.1)])
def test_feature_term_sees_the_teacher_networks_features(tiny_splits, augment):
    # a teacher that *is* the student at initialisation: W2 between their features is 0
    student = make_mlp(tiny_splits, seed=4)
    teacher = DeterministicTeacher(copy.deepcopy(student))
    settings = _per_step_settings(tiny_splits)
    history = distill(
        student,
        tiny_splits.train,
        teacher,
        loss=[LossTerm("onehot_ce"), LossTerm("w2_empirical", 1.0)],
        settings=settings,
        seed=0,
        augment=augment,
        progress=False,
    ).history
    assert history[0]["train_loss/w2_empirical"] == pytest.approx(0.0, abs=1e-6)
    assert history[1]["train_loss/w2_empirical"] > 1e-6  # the student has moved
    assert history[0]["train_loss"] == pytest.approx(history[0]["train_loss/onehot_ce"], abs=1e-6)


def test_feature_term_value_by_hand(tiny_splits, trained_mlp):
    train = tiny_splits.train
    teacher = TemperedTeacher(DeterministicTeacher(trained_mlp), 2.0)
    assert feature_network(teacher) is trained_mlp  # temperature leaves the features
    settings = _per_step_settings(tiny_splits)
    student = make_mlp(tiny_splits, seed=1)
    start = copy.deepcopy(student)
    history = distill(
        student,
        train,
        teacher,
        loss=[LossTerm("kd"), LossTerm("w2_empirical", 0.5)],
        settings=settings,
        seed=2,
        progress=False,
    ).history
    index = TensorBatches(train, BATCH, seed=2).order(0)[:BATCH]
    teacher_features = features_in_batches(trained_mlp, train.x)[index]
    logits, features = start.forward_with_features(train.x[index])
    w2 = w2_empirical(features, teacher_features, train.y[index])
    soft = kd(logits, teacher.predict_proba(train.x[index]), train.y[index])
    assert history[0]["train_loss/w2_empirical"] == pytest.approx(w2.item(), rel=1e-5)
    assert history[0]["train_loss"] == pytest.approx((soft + 0.5 * w2).item(), rel=1e-5)


def test_precomputed_teacher_features_are_used_as_given(tiny_splits, trained_mlp):
    student = make_mlp(tiny_splits)
    given = features_in_batches(student, tiny_splits.train.x)  # the student's own features
    history = distill(
        student,
        tiny_splits.train,
        DeterministicTeacher(trained_mlp),
        loss=[LossTerm("onehot_ce"), LossTerm("gaussian_w2")],
        settings=_per_step_settings(tiny_splits),
        teacher_features=given,
        progress=False,
    ).history
    assert history[0]["train_loss/gaussian_w2"] == pytest.approx(0.0, abs=1e-6)


def test_feature_dimensions_must_agree(tiny_splits, trained_mlp):
    with pytest.raises(ConfigError, match=r"student's have D = 8 and the teacher's D = 16"):
        distill(
            make_mlp(tiny_splits, hidden=(8,)),
            tiny_splits.train,
            DeterministicTeacher(trained_mlp),
            loss=[LossTerm("onehot_ce"), LossTerm("w2_empirical")],
            progress=False,
        )


def test_feature_terms_need_a_teacher_with_one_network(tiny_splits, trained_mlp):
    ensemble = EnsembleTeacher([DeterministicTeacher(trained_mlp)] * 2)
    with pytest.raises(ConfigError, match=r"kind 'ensemble' has no single network"):
        distill(
            make_mlp(tiny_splits),
            tiny_splits.train,
            ensemble,
            loss=[LossTerm("kd"), LossTerm("mmd")],
            progress=False,
        )


def test_a_feature_distance_alone_is_refused(tiny_splits, trained_mlp):
    with pytest.raises(ConfigError, match=r"feature distances only.*onehot_ce"):
        distill(
            make_mlp(tiny_splits),
            tiny_splits.train,
            DeterministicTeacher(trained_mlp),
            loss="w2_empirical",
            progress=False,
        )


def test_a_binary_loss_on_three_classes_is_refused_before_training(tiny_splits, trained_mlp):
    teacher = DeterministicTeacher(trained_mlp)
    for loss in ("distilled_ranking", [LossTerm("kd"), LossTerm("distilled_ranking")]):
        with pytest.raises(
            ConfigError, match=r"'distilled_ranking' is for binary tasks.*3 classes"
        ):
            distill(make_mlp(tiny_splits), tiny_splits.train, teacher, loss=loss, progress=False)


def test_distilled_ranking_trains_on_two_classes(tiny_splits):
    keep = tiny_splits.train.y < 2
    two = ArrayData(tiny_splits.train.x[keep], tiny_splits.train.y[keep], 2)
    with seeded(0):
        net = create_model("mlp", tiny_splits.input_shape, 2, hidden=(16,))
    result = distill(
        copy.deepcopy(net),
        two,
        DeterministicTeacher(net),
        loss="distilled_ranking",
        settings=TrainSettings(epochs=1, batch_size=16),
        progress=False,
    )
    assert math.isfinite(result.final["train_loss"])
