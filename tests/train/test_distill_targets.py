"""What `distill` gives the student to learn from: the teacher's `training_targets`.

A cross-fitted teacher on its own training set gives its out-of-fold table (not the mean of
its K fold teachers, which saw each example), under temperature scaling too; and it refuses
an augmentation, for which no out-of-fold target exists.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from bayesdistill.data import DataSplits
from bayesdistill.data.augment import RandomShift
from bayesdistill.errors import ConfigError
from bayesdistill.losses.response import temper_probs
from bayesdistill.teachers import CrossFittedTeacher, DeterministicTeacher, TemperedTeacher
from bayesdistill.train import TrainSettings, distill, predict_in_batches

from ..conftest import make_mlp

ONE_BATCH = TrainSettings(epochs=1, batch_size=1024, lr=0.1)
"""One step over the whole training set: the step sees every example's target once."""


def _cross_fitted(splits: DataSplits) -> CrossFittedTeacher:
    """Two fold teachers and an out-of-fold table unlike either's predictions."""
    train = splits.train
    members = [DeterministicTeacher(make_mlp(splits, seed=s)) for s in (1, 2)]
    logits = torch.randn(len(train), splits.num_classes, generator=torch.Generator().manual_seed(5))
    fold_of = torch.arange(len(train)) % 2
    return CrossFittedTeacher(members, fold_of, torch.softmax(4 * logits, 1), train.y)


def _targets_seen(splits: DataSplits, teacher, **options) -> Tensor:
    """The teacher probabilities ``(N, C)`` a one-step student saw, sorted by row."""
    seen: list[Tensor] = []

    def recording(logits: Tensor, teacher_probs: Tensor, labels: Tensor) -> Tensor:
        seen.append(teacher_probs.detach().clone())
        return F.cross_entropy(logits, labels)

    distill(
        make_mlp(splits, seed=3),
        splits.train,
        teacher,
        loss=recording,
        settings=ONE_BATCH,
        progress=False,
        **options,
    )
    return _sorted_rows(torch.cat(seen))


def _sorted_rows(probs: Tensor) -> Tensor:
    return probs[torch.argsort(probs[:, 0])]


def test_a_cross_fitted_teacher_gives_the_student_its_out_of_fold_table(tiny_splits):
    teacher = _cross_fitted(tiny_splits)
    seen = _targets_seen(tiny_splits, teacher)
    assert seen.shape == (len(tiny_splits.train), tiny_splits.num_classes)
    assert torch.allclose(seen, _sorted_rows(teacher.out_of_fold()))
    mean = predict_in_batches(teacher, tiny_splits.train)  # what distill asked before
    assert not torch.allclose(seen, _sorted_rows(mean), atol=1e-2)


def test_temperature_scaling_applies_to_the_out_of_fold_table_in_distill(tiny_splits):
    teacher = TemperedTeacher(_cross_fitted(tiny_splits), 2.0)
    seen = _targets_seen(tiny_splits, teacher)
    expected = temper_probs(teacher.base.out_of_fold(), 2.0)
    assert torch.allclose(seen, _sorted_rows(expected), atol=1e-6)


def test_on_other_data_a_cross_fitted_teacher_gives_its_predictions(tiny_splits):
    teacher = _cross_fitted(tiny_splits)
    other = tiny_splits.with_train(tiny_splits.train.subset(torch.arange(100)))
    seen = _targets_seen(other, teacher)
    assert torch.allclose(seen, _sorted_rows(predict_in_batches(teacher, other.train)))


@pytest.mark.parametrize("cache", ["none", "views"])
def test_augmenting_a_cross_fitted_teachers_students_is_refused(tiny_splits, cache):
    for teacher in (_cross_fitted(tiny_splits), TemperedTeacher(_cross_fitted(tiny_splits), 2.0)):
        with pytest.raises(ConfigError, match=r"teacher '(cross_fitted|tempered)'.*augment"):
            _targets_seen(
                tiny_splits, teacher, augment=RandomShift(max_shift=1), teacher_cache=cache
            )
