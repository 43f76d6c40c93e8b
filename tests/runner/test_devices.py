"""A student stage hands its student the teacher's training-set table on the student's
device, also when the teacher has no network and lives on the CPU (``exact_bcp``).

The "meta" device stands in for a CUDA device: a CPU table indexed by a meta index gives a
CPU result (garbage, in fact), where a CUDA index into a CPU table raises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bayesdistill.config.losses import LossConfig
from bayesdistill.config.schema import StudentConfig, SubsetConfig
from bayesdistill.data import DataSplits, GaussianMixture, arrays
from bayesdistill.runner import students
from bayesdistill.runner.students import train_student
from bayesdistill.runner.targets import student_indices
from bayesdistill.teachers import ExactBayesTeacher
from bayesdistill.train import predict_in_batches


class _HandedError(Exception):
    """Stops `train_student` where it hands its arguments to `distill`."""


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_exact_teacher_table_reaches_the_student_on_its_device(
    tiny_splits: DataSplits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str
) -> None:
    teacher = ExactBayesTeacher(
        GaussianMixture.from_state(tiny_splits.bayes_state["mixture"]), tiny_splits.standardizer
    )
    assert teacher.device == torch.device("cpu")
    handed: dict[str, Any] = {}

    def fake_distill(network: torch.nn.Module, train: Any, *args: Any, **kwargs: Any) -> None:
        handed.update(kwargs, network=network, train=train)
        raise _HandedError

    monkeypatch.setattr(students, "distill", fake_distill)
    if device == "meta":  # meta tensors hold no values for ArrayData to check
        monkeypatch.setattr(arrays, "validate_arrays", lambda *args, **kwargs: None)
    config = StudentConfig(subset=SubsetConfig(per_class=5))
    with pytest.raises(_HandedError):
        train_student(
            config,
            tiny_splits,
            0,
            teacher,
            LossConfig(name="kd"),
            "exact_bcp",
            tmp_path,
            torch.device(device),
            resume=False,
            progress=False,
        )
    probs = handed["teacher_probs"]
    student_device = next(handed["network"].parameters()).device
    assert student_device == torch.device(device)
    assert probs.device == student_device
    assert probs.shape == (15, tiny_splits.num_classes)
    if device == "cpu":
        index = student_indices(config, tiny_splits, 0)
        expected = predict_in_batches(teacher, tiny_splits.train)[index]
        assert torch.equal(probs, expected)
