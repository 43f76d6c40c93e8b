"""What training needs from a teacher: the one `Teacher` protocol.

The protocol lives with its consumer, the training layer, so that `bayesdistill.train`
never imports `bayesdistill.teachers`: teachers are built on top of training (they train
networks with `bayesdistill.train.fit`) and implement this protocol; the training loop
and `distill` accept anything that does.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from bayesdistill.errors import DataError


@runtime_checkable
class Teacher(Protocol):
    """Anything that gives class probabilities for a batch of inputs."""

    num_classes: int

    def predict_proba(self, x: Tensor) -> Tensor:
        """Class probabilities ``(B, C)`` for inputs ``(B, ...)``; rows sum to one."""
        ...


def check_teacher_matches(teacher: Teacher, num_classes: int, where: str = "data") -> None:
    """Raise `DataError` when the teacher's class count differs from the data's."""
    if teacher.num_classes != num_classes:
        raise DataError(
            f"the teacher predicts {teacher.num_classes} classes but the {where} has "
            f"{num_classes}; distil with a teacher trained on the same label set"
        )
