"""The loop reads losses from the device only at evaluation points and finiteness checks,
logs the very numbers a loop reading every loss would, and stops a diverged run before it
writes a record or a checkpoint."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from bayesdistill.io import JsonLines, load_torch
from bayesdistill.losses import onehot_ce, unchecked
from bayesdistill.train import CachedTargets, TrainSettings, fit, sgd_step
from bayesdistill.train.objective import LossTerm, StepInputs, WeightedSum
from bayesdistill.train.running_loss import FINITE_CHECK_STEPS

from ..conftest import make_mlp

HOST_READS = ("__float__", "__int__", "__bool__", "__index__", "item", "tolist", "numpy")
"""Tensor methods that copy a value to the host: on a GPU, each waits for the device."""
ONE_TIME_READS = 10
"""Reads once per `fit`, whatever its length (checking the data as it moves to the device)."""
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


class NaNFrom:
    """``onehot_ce``, multiplied by NaN from global step ``start`` on; counts its calls."""

    def __init__(self, start: int, steps_per_epoch: int) -> None:
        self.start, self.steps_per_epoch, self.calls = start, steps_per_epoch, 0

    def __call__(self, model: torch.nn.Module, inputs: StepInputs):
        self.calls += 1
        # unchecked, as the loop's own losses: the checked one refuses the NaN logits that
        # follow the first NaN step before the loop could report it
        loss = unchecked(onehot_ce)(model(inputs.x), None, inputs.y)
        if round(inputs.epoch * self.steps_per_epoch) >= self.start:
            loss = loss * math.nan
        return loss, {}


def _fit(splits, settings, folder=None, device="cpu", **kwargs):
    kwargs.setdefault("loss_fn", None if "objective" in kwargs else onehot_ce)
    return fit(
        make_mlp(splits).to(device),
        splits.train,
        settings=settings,
        seed=0,
        run_dir=folder,
        progress=False,
        **kwargs,
    )


def _assert_finite_records(folder, epochs: int) -> None:
    records = JsonLines(folder / "metrics.jsonl").read()
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    assert all(math.isfinite(v) for r in records for v in r.values())


def _assert_finite_checkpoint(folder, epoch: int) -> None:
    saved = load_torch(folder / "checkpoint.pt", what="checkpoint")
    assert saved["epoch"] == epoch
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


@pytest.mark.parametrize("device", DEVICES)
def test_a_huge_learning_rate_stops_the_run_and_keeps_the_last_good_checkpoint(
    tiny_splits, tmp_path, device
):
    # lr 0.1 in epoch 0, then 0.1 · 10⁷ = 10⁶
    settings = TrainSettings(
        epochs=3, batch_size=2, lr=0.1, schedule="multistep", milestones=(1,), gamma=1e7
    )
    message = r"loss became (nan|-?inf) at epoch 1, batch \d+; lower the learning rate \(lr=0.1\)"
    with pytest.raises(FloatingPointError, match=message):
        _fit(tiny_splits, settings, tmp_path, device)
    _assert_finite_records(tmp_path, epochs=1)
    _assert_finite_checkpoint(tmp_path, epoch=1)
    # the checkpoint is that of a run stopped after epoch 0, and resumes to the same error
    one_epoch = _fit(tiny_splits, replace(settings, epochs=1), None, device)
    saved = load_torch(tmp_path / "checkpoint.pt", what="checkpoint")["model"]
    for name, value in one_epoch.model.state_dict().items():
        assert torch.equal(saved[name], value.cpu()), name
    with pytest.raises(FloatingPointError, match=message):
        _fit(tiny_splits, settings, tmp_path, device, resume=True)


@pytest.mark.parametrize("bad_batch", [10, 49, 50, 70, 89])
def test_the_error_names_the_first_non_finite_batch_within_the_check_interval(
    tiny_splits, tmp_path, bad_batch
):
    settings = TrainSettings(epochs=3, batch_size=2, lr=0.1)
    steps = len(tiny_splits.train) // settings.batch_size
    assert steps > FINITE_CHECK_STEPS + 20  # checks inside an epoch, not only at its end
    objective = NaNFrom(steps + bad_batch, steps)
    with pytest.raises(
        FloatingPointError, match=f"loss became nan at epoch 1, batch {bad_batch}; lower"
    ):
        _fit(tiny_splits, settings, tmp_path, objective=objective)
    assert objective.calls - (steps + bad_batch + 1) < FINITE_CHECK_STEPS
    _assert_finite_records(tmp_path, epochs=1)
    _assert_finite_checkpoint(tmp_path, epoch=1)


def test_weights_that_overflow_after_a_finite_loss_are_not_checkpointed(tiny_splits, tmp_path):
    settings = TrainSettings(epochs=2, batch_size=30, lr=0.1)
    steps, taken = len(tiny_splits.train) // settings.batch_size, []

    def overflowing_step(model, optimizer, compute_loss):
        loss = sgd_step(model, optimizer, compute_loss)
        taken.append(1)
        if len(taken) == 2 * steps:  # the last step of the run: no later loss sees it
            next(model.parameters()).data[0, 0] = math.inf
        return loss

    with pytest.raises(
        FloatingPointError, match=f"weights became non-finite at epoch 1, batch {steps - 1}"
    ):
        _fit(tiny_splits, settings, tmp_path, step=overflowing_step)
    _assert_finite_records(tmp_path, epochs=1)
    _assert_finite_checkpoint(tmp_path, epoch=1)


def _two_evaluations_step(model, optimizer, compute_loss):
    """Like IVON's step with 2 MC samples: two loss evaluations, their mean returned."""
    optimizer.zero_grad()
    losses = []
    for _ in range(2):
        loss = compute_loss()
        loss.backward()
        losses.append(loss.detach())
    optimizer.step()
    return torch.stack(losses).mean()


@pytest.mark.parametrize("step", [sgd_step, _two_evaluations_step])
def test_records_hold_the_means_of_the_losses_summed_as_python_floats(tiny_splits, step):
    """The numbers of a loop that reads every step's loss and terms as a Python float and
    adds them up in step order (float64), as the loop did before it kept them on the
    device: equal to the last bit."""
    objective = WeightedSum([LossTerm("onehot_ce"), LossTerm("soft_ce", 0.5)])
    teacher = torch.randn(len(tiny_splits.train), 3, generator=torch.Generator().manual_seed(0))
    step_losses: list[float] = []
    step_terms: list[list[dict[str, float]]] = []

    def seen_objective(model, inputs):
        loss, terms = objective(model, inputs)
        step_terms[-1].append({name: float(value) for name, value in terms.items()})
        return loss, terms

    def seen_step(model, optimizer, compute_loss):
        step_terms.append([])
        loss = step(model, optimizer, compute_loss)
        step_losses.append(float(loss))
        return loss

    settings = TrainSettings(epochs=2, batch_size=4, lr=0.3, evals_per_epoch=3)
    history = _fit(
        tiny_splits,
        settings,
        objective=seen_objective,
        step=seen_step,
        targets=CachedTargets(teacher.softmax(1)),
    ).history

    assert len(history) == 6
    done = 0
    for record in history:
        steps = range(done, record["step"])
        done = record["step"]
        expected = {"train_loss": 0.0, "train_loss/onehot_ce": 0.0, "train_loss/soft_ce": 0.0}
        for s in steps:
            expected["train_loss"] += step_losses[s]
            for name in ("onehot_ce", "soft_ce"):
                values = [terms[name] for terms in step_terms[s]]
                expected[f"train_loss/{name}"] += sum(values) / len(values)
        for key, total in expected.items():
            assert record[key] == total / len(steps), key


@pytest.mark.parametrize("device", DEVICES)
def test_host_reads_are_bounded_by_evaluation_points_and_checks(tiny_splits, monkeypatch, device):
    settings = TrainSettings(epochs=2, batch_size=1, lr=0.05, evals_per_epoch=2)
    steps = len(tiny_splits.train)
    assert steps >= 3 * FINITE_CHECK_STEPS
    reads: list[str] = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    _fit(tiny_splits, settings, device=device)
    monkeypatch.undo()
    checks = steps // FINITE_CHECK_STEPS  # at most, between evaluation points
    bound = settings.epochs * (settings.evals_per_epoch + checks) + ONE_TIME_READS
    assert len(reads) <= bound, f"{len(reads)} host reads in {settings.epochs * steps} steps"
