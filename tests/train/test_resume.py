"""Resume: a killed run continues to exactly the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from bayesdistill.errors import CheckpointError
from bayesdistill.io import JsonLines, load_torch
from bayesdistill.losses import onehot_ce
from bayesdistill.train import TrainSettings, fit

from ..conftest import interrupt_after, make_mlp

SETTINGS = TrainSettings(epochs=5, batch_size=16, lr=0.1, evals_per_epoch=2, schedule="cosine")


def _fit(splits, folder, resume=False, settings=SETTINGS):
    model = make_mlp(splits, hidden=(16, 16))
    # dropout would draw from the global generator: the RNG state must be restored too
    model.body.insert(2, torch.nn.Dropout(0.2))
    return fit(
        model,
        splits.train,
        loss_fn=onehot_ce,
        settings=settings,
        seed=3,
        evaluate=lambda m: {
            "val_loss": float(onehot_ce(m.eval()(splits.val.x), None, splits.val.y))
        },
        run_dir=folder,
        resume=resume,
        progress=False,
    )


def _without_time(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_interrupted_run_resumes_to_identical_weights_and_curve(tiny_splits, tmp_path):
    full = _fit(tiny_splits, tmp_path / "full")
    interrupt_after(3, lambda: _fit(tiny_splits, tmp_path / "part"))
    assert len(JsonLines(tmp_path / "part" / "metrics.jsonl").read()) == 6  # 3 epochs × 2 evals
    resumed = _fit(tiny_splits, tmp_path / "part", resume=True)
    assert resumed.resumed_from_epoch == 3
    for p, q in zip(
        full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q)
    assert _without_time(full.history) == _without_time(resumed.history)
    assert _without_time(JsonLines(tmp_path / "part" / "metrics.jsonl").read()) == _without_time(
        full.history
    )


def test_finished_run_resumes_to_itself(tiny_splits, tmp_path):
    first = _fit(tiny_splits, tmp_path / "run")
    again = _fit(tiny_splits, tmp_path / "run", resume=True)
    assert again.resumed_from_epoch == SETTINGS.epochs
    assert all(
        torch.equal(p, q)
        for p, q in zip(first.model.parameters(), again.model.parameters(), strict=True)
    )


def test_resume_with_other_settings_is_refused(tiny_splits, tmp_path):
    _fit(tiny_splits, tmp_path / "run")
    from dataclasses import replace

    with pytest.raises(CheckpointError, match="other settings"):
        _fit(tiny_splits, tmp_path / "run", resume=True, settings=replace(SETTINGS, lr=0.2))


def test_truncated_checkpoint_is_a_clear_error(tiny_splits, tmp_path):
    _fit(tiny_splits, tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(
        CheckpointError, match=r"checkpoint.pt.*truncated, corrupt.*rerun without --resume"
    ):
        _fit(tiny_splits, tmp_path / "run", resume=True)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from bayesdistill.data import gaussian_mixture, make_splits
    from bayesdistill.losses import onehot_ce
    from bayesdistill.models import create_model
    from bayesdistill.seeding import seeded
    from bayesdistill.train import TrainSettings, fit
    torch.set_num_threads(1)
    splits = make_splits(gaussian_mixture(num_classes=3, dim=8, num_samples=4000, seed=0), seed=0)
    with seeded(0):
        model = create_model("mlp", splits.input_shape, 3, hidden=(256, 256))
    settings = TrainSettings(epochs=int(sys.argv[2]), batch_size=8, lr=0.01)
    fit(model, splits.train, loss_fn=onehot_ce, settings=settings, seed=1, run_dir=sys.argv[1],
        resume=sys.argv[3] == "resume", progress=False)
    torch.save(model.state_dict(), sys.argv[1] + "/final.pt")
    """
)


@pytest.mark.parametrize("kill_after_checkpoints", [1])
def test_sigkill_leaves_no_half_written_files_and_resumes_exactly(tmp_path, kill_after_checkpoints):
    script = tmp_path / "train.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    epochs = "6"
    reference = tmp_path / "reference"
    subprocess.run(
        [sys.executable, str(script), str(reference), epochs, "fresh"], check=True, env=env
    )

    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(run), epochs, "fresh"], env=env)
    ckpt = run / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.01)
    assert ckpt.exists(), "no checkpoint appeared"
    time.sleep(0.05)  # land somewhere inside the next epoch (or inside a write)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "final.pt").exists(), "the run finished before it could be killed"

    # every file that is not a temporary is complete
    state = load_torch(ckpt)
    assert 1 <= state["epoch"] < int(epochs)
    JsonLines(run / "metrics.jsonl").read()
    leftovers = [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert all(name.startswith(".") for name in leftovers)

    subprocess.run([sys.executable, str(script), str(run), epochs, "resume"], check=True, env=env)
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    a = torch.load(reference / "final.pt", weights_only=True)
    b = torch.load(run / "final.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [float(e) for e in range(1, int(epochs) + 1)]


def test_records_are_mirrored_to_tensorboard(tiny_splits, tmp_path):
    """Within mirror_to_tensorboard every numeric key of every record becomes a scalar at
    the record's step; a killed and resumed run's event files hold each step once."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from bayesdistill.train.recorder import mirror_to_tensorboard

    with mirror_to_tensorboard():
        interrupt_after(3, lambda: _fit(tiny_splits, tmp_path / "run"))
        result = _fit(tiny_splits, tmp_path / "run", resume=True)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert {"train_loss", "val_loss", "lr", "epoch"} <= set(events.Tags()["scalars"])
    logged = events.Scalars("val_loss")
    assert [e.step for e in logged] == [r["step"] for r in result.history]
    assert [e.value for e in logged] == pytest.approx([r["val_loss"] for r in result.history])


def test_tensorboard_missing_is_a_clear_error(monkeypatch):
    import builtins

    from bayesdistill.errors import ConfigError
    from bayesdistill.train.recorder import mirror_to_tensorboard

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with (
        pytest.raises(ConfigError, match=r"pip install \"bayesdistill\[tensorboard\]\""),
        mirror_to_tensorboard(),
    ):
        pass
