"""The training loop: cached vs online targets, schedules, errors."""

from __future__ import annotations

import math

import pytest
import torch

from bayesdistill.data.augment import GaussianNoise
from bayesdistill.errors import ConfigError
from bayesdistill.losses import onehot_ce, soft_ce
from bayesdistill.teachers import DeterministicTeacher
from bayesdistill.train import (
    CachedTargets,
    LRFactor,
    OnlineTargets,
    TrainSettings,
    fit,
    predict_in_batches,
)

from ..conftest import make_mlp


class CountingTeacher(DeterministicTeacher):
    calls = 0
    rows = 0

    def _predict(self, x):
        CountingTeacher.calls += 1
        CountingTeacher.rows += len(x)
        return super()._predict(x)


def test_cached_targets_query_the_teacher_once(tiny_splits, trained_mlp):
    teacher = CountingTeacher(trained_mlp)
    CountingTeacher.calls = CountingTeacher.rows = 0
    probs = predict_in_batches(teacher, tiny_splits.train.x, batch_size=10_000)
    settings = TrainSettings(epochs=3, batch_size=16)
    fit(
        make_mlp(tiny_splits),
        tiny_splits.train,
        loss_fn=soft_ce,
        settings=settings,
        seed=0,
        targets=CachedTargets(probs),
        progress=False,
    )
    assert CountingTeacher.calls == 1 and CountingTeacher.rows == len(tiny_splits.train)


def test_augmented_training_queries_the_teacher_on_every_batch(tiny_splits, trained_mlp):
    teacher = CountingTeacher(trained_mlp)
    CountingTeacher.calls = CountingTeacher.rows = 0
    settings = TrainSettings(epochs=2, batch_size=16)
    fit(
        make_mlp(tiny_splits),
        tiny_splits.train,
        loss_fn=soft_ce,
        settings=settings,
        seed=0,
        targets=OnlineTargets(teacher),
        augment=GaussianNoise(std=0.1),
        progress=False,
    )
    batches = math.ceil(len(tiny_splits.train) / 16)
    assert CountingTeacher.calls == 2 * batches
    assert CountingTeacher.rows == 2 * len(tiny_splits.train)


def test_same_seed_same_weights_other_seed_other_weights(tiny_splits):
    settings = TrainSettings(epochs=2, batch_size=16)

    def run(seed):
        return fit(
            make_mlp(tiny_splits),
            tiny_splits.train,
            loss_fn=onehot_ce,
            settings=settings,
            seed=seed,
            progress=False,
        ).model

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))


def test_lr_schedules():
    cosine = LRFactor(TrainSettings(epochs=10, schedule="cosine"), steps_per_epoch=10)
    assert cosine(0) == pytest.approx(1.0)
    assert cosine(50) == pytest.approx(0.5)
    assert cosine(100) == pytest.approx(0.0, abs=1e-12)
    step = LRFactor(
        TrainSettings(epochs=10, schedule="multistep", milestones=(3, 6), gamma=0.1), 10
    )
    assert [step(t) for t in (0, 29, 30, 59, 60)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    warm = LRFactor(TrainSettings(epochs=10, schedule="constant", warmup_epochs=1), 10)
    assert [warm(t) for t in (0, 4, 9, 10, 99)] == pytest.approx([0.1, 0.5, 1.0, 1.0, 1.0])


def test_diverging_loss_is_reported(tiny_splits):
    settings = TrainSettings(epochs=1, batch_size=16, lr=1e30)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(
            make_mlp(tiny_splits),
            tiny_splits.train,
            loss_fn=onehot_ce,
            settings=settings,
            seed=0,
            progress=False,
        )


def test_distill_matches_fit_with_cached_targets(tiny_splits, trained_mlp):
    from bayesdistill.losses import kd
    from bayesdistill.train import distill

    teacher = DeterministicTeacher(trained_mlp)
    settings = TrainSettings(epochs=2, batch_size=16)
    a = distill(
        make_mlp(tiny_splits),
        tiny_splits.train,
        teacher,
        loss="kd",
        loss_options={"alpha": 0.7, "temperature": 2.0},
        settings=settings,
        seed=0,
        progress=False,
    ).model
    probs = teacher.predict_proba(tiny_splits.train.x)

    def loss_fn(z, p, y):
        return kd(z, p, y, alpha=0.7, temperature=2.0)

    b = fit(
        make_mlp(tiny_splits),
        tiny_splits.train,
        loss_fn=loss_fn,
        settings=settings,
        seed=0,
        targets=CachedTargets(probs),
        progress=False,
    ).model
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_distill_rejects_a_teacher_with_other_classes(tiny_splits, trained_mlp):
    from bayesdistill.data import ArrayData
    from bayesdistill.errors import DataError
    from bayesdistill.train import distill

    five = ArrayData(tiny_splits.train.x, tiny_splits.train.y, 5)
    with pytest.raises(DataError, match="predicts 3 classes but the training data has 5"):
        distill(make_mlp(tiny_splits), five, DeterministicTeacher(trained_mlp), progress=False)


def test_gradient_clipping_bounds_each_step_by_lr_times_the_norm(tiny_splits):
    """Plain SGD (no momentum, no decay) moves the weights by lr·g; with clipping the move
    is lr·g·min(1, c/‖g‖): exactly lr·c for a loss scaled so that ‖g‖ ≫ c."""

    def huge(logits, teacher, y):
        return 1e4 * onehot_ce(logits, teacher, y)

    moves = {}
    for clip in (None, 0.5):
        model = make_mlp(tiny_splits)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        settings = TrainSettings(
            epochs=1,
            batch_size=len(tiny_splits.train),
            lr=0.01,
            momentum=0.0,
            weight_decay=0.0,
            schedule="constant",
            grad_clip_norm=clip,
        )
        fit(model, tiny_splits.train, loss_fn=huge, settings=settings, seed=0, progress=False)
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        moves[clip] = float((after - before).norm())
    assert moves[0.5] == pytest.approx(0.01 * 0.5, rel=1e-4)
    assert moves[None] > 100 * moves[0.5]


def test_gradient_clipping_must_be_positive():
    with pytest.raises(ConfigError, match="grad_clip_norm must be positive"):
        TrainSettings(grad_clip_norm=0.0)
