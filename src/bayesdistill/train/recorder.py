"""What a training run leaves behind: its learning curve, its checkpoint, its progress bar.

The training loop hands every record and every end of epoch to one `Recorder`, which owns
the run folder:

- ``metrics.jsonl``: one record per evaluation point, appended and fsynced line by line;
- ``checkpoint.pt``: model, optimiser, scheduler, gradient scaler and every process's
  random state, rewritten atomically at the end of every epoch, with a fingerprint of
  what made the run (settings, data size, architecture, ...) that a resume must match;
- a progress bar over epochs, shown only on an interactive terminal (it would fill a
  log file with carriage returns otherwise).

In a distributed run every rank keeps the history; only rank 0 writes files
(`bayesdistill.io` sees to that).

Within `mirror_to_tensorboard()` every recorder with a run folder also writes each record
to TensorBoard (``<run folder>/tensorboard/``, one scalar per numeric key at the record's
``step``); TensorBoard is an optional dependency (``pip install "bayesdistill[tensorboard]"``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from bayesdistill.errors import CheckpointError, ConfigError
from bayesdistill.io import JsonLines, load_torch, remove_stale_temporaries, save_torch

CHECKPOINT_FORMAT = "bayesdistill.checkpoint"
CHECKPOINT_VERSION = 2
CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
SHOWN_IN_PROGRESS_BAR = ("train_loss", "val_accuracy", "test_accuracy")
RESUMABLE_OPTIMIZER_ATTRS = ("current_step",)
"""Optimiser attributes missing from ``state_dict()`` (IVON's step counter) but saved."""


class TrainingState:
    """The objects a checkpoint saves and restores."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        self.model, self.optimizer, self.scheduler, self.scaler = (
            model,
            optimizer,
            scheduler,
            scaler,
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def state_dict(self) -> dict[str, Any]:
        # The lr factor is rebuilt from the settings; only the step counter needs saving.
        scheduler = {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"}
        scheduler["lr_lambdas"] = [None]
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "optimizer_attrs": {
                a: getattr(self.optimizer, a)
                for a in RESUMABLE_OPTIMIZER_ATTRS
                if hasattr(self.optimizer, a)
            },
            "scheduler": scheduler,
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for name, value in state["optimizer_attrs"].items():
            setattr(self.optimizer, name, value)
        _move_optimizer_tensors(self.optimizer, self.device)
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])


TENSORBOARD_DIR = "tensorboard"
_MIRRORS: list[str] = []


@contextlib.contextmanager
def mirror_to_tensorboard() -> Iterator[None]:
    """Within the block, every training run with a run folder mirrors its metrics records
    to TensorBoard event files in ``<run folder>/tensorboard/``."""
    _tensorboard_writer_class()  # fail here, clearly, when TensorBoard is missing
    _MIRRORS.append(TENSORBOARD_DIR)
    try:
        yield
    finally:
        _MIRRORS.pop()


def _tensorboard_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "log.tensorboard needs TensorBoard, which is not installed; install it with "
            'pip install "bayesdistill[tensorboard]" (or pip install tensorboard), or set '
            "log.tensorboard: false"
        ) from None
    return SummaryWriter


def rng_state(device: torch.device) -> dict[str, Tensor]:
    """This process's random state: torch's CPU generator and, on CUDA, the device's."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class Recorder:
    """The run folder of one training run (None: keep the history in memory only).

    Args:
        run_dir: where ``metrics.jsonl`` and ``checkpoint.pt`` go, or None.
        fingerprint: what a resumed checkpoint must have been written with.
        epochs: total epochs (the progress bar's length).
        description: the progress bar's label.
        progress: show a progress bar (only ever on an interactive terminal).
        writer: whether this process shows progress (rank 0 of a distributed run).
    """

    def __init__(
        self,
        run_dir: str | Path | None,
        *,
        fingerprint: str,
        epochs: int,
        description: str,
        progress: bool,
        writer: bool = True,
    ) -> None:
        self.run = Path(run_dir) if run_dir is not None else None
        self.fingerprint = fingerprint
        self.epochs = epochs
        self.description = description
        self.show_progress = progress and writer and _interactive()
        self.writer = writer
        self.log = JsonLines(self.run / METRICS_NAME) if self.run is not None else None
        self.history: list[dict[str, Any]] = []
        self.bar: Any = None
        self.tensorboard: Any = None

    @property
    def checkpoint(self) -> Path | None:
        return None if self.run is None else self.run / CHECKPOINT_NAME

    def start(
        self, state: TrainingState, *, resume: bool, steps_per_epoch: int, rank: int = 0
    ) -> tuple[int, dict[str, Tensor] | None]:
        """Prepare the folder; on ``resume`` restore ``state`` from the checkpoint.

        Returns the epoch to start from and this rank's saved random state (None when
        starting afresh). The history keeps the records up to the restored epoch.
        """
        start_epoch, rng = 0, None
        if self.run is not None:
            self.run.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.run)
            checkpoint, log = self.checkpoint, self.log
            assert checkpoint is not None and log is not None
            last_step = -1  # starting afresh keeps no record
            if resume and checkpoint.exists():
                start_epoch, rng = self._restore(checkpoint, state, rank)
                last_step = start_epoch * steps_per_epoch
            self.history = [r for r in log.read() if r["step"] <= last_step]
            log.truncate(lambda r: r["step"] <= last_step)
        if _MIRRORS and self.run is not None and self.writer:
            # earlier event files keep the records up to the checkpoint; purge_step drops
            # what a killed run logged after it, as metrics.jsonl was truncated
            last = int(self.history[-1]["step"]) if self.history else 0
            self.tensorboard = _tensorboard_writer_class()(
                str(self.run / _MIRRORS[-1]), purge_step=last + 1 if resume else None
            )
        self.bar = tqdm(
            total=self.epochs,
            initial=start_epoch,
            desc=self.description,
            disable=not self.show_progress,
            leave=False,
            dynamic_ncols=True,
        )
        return start_epoch, rng

    def record(self, record: dict[str, Any]) -> None:
        """Keep one evaluation point's record (and append it to ``metrics.jsonl``)."""
        self.history.append(record)
        if self.log is not None:
            self.log.append(record)
        self._mirror(record)

    def _mirror(self, record: dict[str, Any]) -> None:
        if self.tensorboard is None:
            return
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.tensorboard.add_scalar(key, value, global_step=int(record["step"]))
        self.tensorboard.flush()

    def end_epoch(self, epoch: int, state: TrainingState, rngs: list[dict[str, Tensor]]) -> None:
        """Checkpoint after epoch ``epoch`` (0-based) with every rank's random state."""
        checkpoint = self.checkpoint
        if checkpoint is not None:
            save_torch(
                checkpoint,
                {
                    "format": CHECKPOINT_FORMAT,
                    "version": CHECKPOINT_VERSION,
                    "fingerprint": self.fingerprint,
                    "epoch": epoch + 1,
                    **state.state_dict(),
                    "rng": rngs,
                },
            )
        self.bar.update(1)
        if self.history:
            last = self.history[-1]
            self.bar.set_postfix(
                {k: f"{v:.3f}" for k, v in last.items() if k in SHOWN_IN_PROGRESS_BAR}
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tensorboard is not None:
            self.tensorboard.close()

    def _restore(
        self, path: Path, state: TrainingState, rank: int
    ) -> tuple[int, dict[str, Tensor]]:
        saved = load_torch(path, what="training checkpoint", expected_format=CHECKPOINT_FORMAT)
        if saved.get("fingerprint") != self.fingerprint:
            raise CheckpointError(
                f"checkpoint '{path}' was written by a run with other settings, data or model "
                f"(fingerprint {saved.get('fingerprint')} ≠ {self.fingerprint}); resume with "
                "the same config, or delete the folder / choose another output folder to start "
                "afresh"
            )
        state.load_state_dict(saved)
        rngs = saved["rng"]
        if isinstance(rngs, dict):  # version 1: one process
            rngs = [rngs]
        if rank >= len(rngs):
            raise CheckpointError(
                f"checkpoint '{path}' holds the random state of {len(rngs)} process(es); it "
                f"cannot resume rank {rank}: resume with the number of processes it was "
                "written with"
            )
        return int(saved["epoch"]), rngs[rank]


def _interactive() -> bool:
    """Whether stderr (where progress bars go) is a terminal."""
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def _move_optimizer_tensors(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    # IVON keeps its posterior (hess, momentum) in param_groups, which load_state_dict
    # does not move to the parameters' device.
    for group in optimizer.param_groups:
        for key, value in group.items():
            if isinstance(value, Tensor) and key != "params":
                group[key] = value.to(device)
