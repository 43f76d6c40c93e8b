"""What training needs from a teacher: the one `Teacher` protocol.

The protocol lives with its consumer, the training layer, so that `bayesdistill.train`
never imports `bayesdistill.teachers`: teachers are built on top of training (they train
networks with `bayesdistill.train.fit`) and implement this protocol; the training loop
and `distill` accept anything that does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from torch import Tensor

from bayesdistill.errors import DataError

if TYPE_CHECKING:
    from bayesdistill.data.labelled import LabelledData
    from bayesdistill.train.accel import Acceleration

PREDICTIONS = "predictions"
"""`Teacher.target_source` of a teacher whose training targets are its predictions."""
OUT_OF_FOLD = "out_of_fold"
"""`Teacher.target_source` of a cross-fitted teacher on its own training set: each example's
target comes from the fold teacher that never saw it."""


@runtime_checkable
class Teacher(Protocol):
    """Anything that gives class probabilities for a batch of inputs.

    ``predict_proba`` is all a teacher must define. ``training_targets`` and
    ``target_source`` say what a student trained on a data set learns from; a teacher that
    does not define them is asked for its predictions (`bayesdistill.train.targets`'s
    functions of the same names call the methods where a teacher has them).
    """

    num_classes: int

    def predict_proba(self, x: Tensor) -> Tensor:
        """Class probabilities ``(B, C)`` for inputs ``(B, ...)``; rows sum to one."""
        ...

    def training_targets(self, data: LabelledData, *, accel: Acceleration = ...) -> Tensor:
        """What a student trained on ``data`` learns from, ``(N, C)`` on the teacher's
        device: by default the teacher's predictions on ``data`` (asked under ``accel``);
        a cross-fitted teacher on its own training set gives its out-of-fold table."""
        ...

    def target_source(self, data: LabelledData) -> str:
        """Where `training_targets` on ``data`` come from: `PREDICTIONS` by default,
        `OUT_OF_FOLD` for a cross-fitted teacher on its own training set."""
        ...


def check_teacher_matches(teacher: Teacher, num_classes: int, where: str = "data") -> None:
    """Raise `DataError` when the teacher's class count differs from the data's."""
    if teacher.num_classes != num_classes:
        raise DataError(
            f"the teacher predicts {teacher.num_classes} classes but the {where} has "
            f"{num_classes}; distil with a teacher trained on the same label set"
        )
