"""How a run runs, not what it computes: speed options, data loading, executors."""

from __future__ import annotations

import contextlib
from enum import Enum

from pydantic import (
    Field,
    field_validator,
)

from bayesdistill.config.specs import _Strict
from bayesdistill.data import LoaderOptions
from bayesdistill.train.accel import Acceleration, Precision
from bayesdistill.train.recorder import mirror_to_tensorboard


class ExecutorName(str, Enum):
    """Where a study's units run (`bayesdistill.runner.executors`)."""

    LOCAL = "local"
    """In the calling process, one after the other."""
    PROCESSES = "processes"
    """A pool of ``workers`` processes on this machine, each on a device from ``devices``."""
    RAY = "ray"
    """Ray tasks on a running cluster (``address``) or a local one (``workers`` CPUs)."""


class ExecutorConfig(_Strict):
    """How a study's units are executed. It changes where they run, not their results, so
    it is not part of a run's identity: a study may be resumed with another executor."""

    name: ExecutorName = ExecutorName.LOCAL
    workers: int = Field(2, ge=1)
    devices: list[str] = Field(default_factory=lambda: ["auto"], min_length=1)
    threads: int | None = Field(None, ge=1)
    """CPU threads per worker (default: the machine's CPUs divided among the workers)."""
    address: str | None = None
    """A Ray cluster to join (``ray.init(address=...)``); None starts a local one."""

    @field_validator("devices")
    @classmethod
    def _known_devices(cls, devices: list[str]) -> list[str]:
        for device in devices:
            if device != "auto" and device.split(":")[0] not in ("cpu", "cuda", "mps"):
                raise ValueError(
                    f"executor devices must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got "
                    f"'{device}'"
                )
        return devices


class LogConfig(_Strict):
    """What a run records besides metrics.jsonl: ``tensorboard`` mirrors every record to
    TensorBoard event files in each training's folder (``<run folder>/tensorboard/``;
    ``pip install "bayesdistill[tensorboard]"``). Not part of a run's identity."""

    tensorboard: bool = False

    def mirror(self) -> contextlib.AbstractContextManager[None]:
        """The context within which trainings mirror their records as configured."""
        return mirror_to_tensorboard() if self.tensorboard else contextlib.nullcontext()


class RuntimeConfig(_Strict):
    """How networks run, not what they learn: speed options, data loading, executors.

    The GPU fast path (`Acceleration`), opt-in: ``precision`` (fp32 | bf16 | fp16: autocast
    of every forward pass, student's and teacher's, with a GradScaler for fp16, which needs
    CUDA), ``channels_last``, ``cudnn_benchmark``, ``compile`` (torch.compile) and, for runs
    under torchrun, ``sync_batchnorm``; ``samples_per_pass``: how many of an IVON or
    mean-field VI teacher's S weight samples run in one vectorised forward pass (1: one after
    another). Data read through a DataLoader (streamed datasets)
    uses ``num_workers`` worker processes and ``pin_memory``. ``executor`` says where a
    study's units run.
    """

    precision: Precision = Precision.FP32
    channels_last: bool = False
    cudnn_benchmark: bool = False
    compile: bool = False
    sync_batchnorm: bool = False
    samples_per_pass: int = Field(1, ge=1)
    num_workers: int = Field(0, ge=0)
    pin_memory: bool = True
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    def loader_options(self) -> LoaderOptions:
        return LoaderOptions(num_workers=self.num_workers, pin_memory=self.pin_memory)

    def acceleration(self) -> Acceleration:
        return Acceleration(
            precision=self.precision,
            channels_last=self.channels_last,
            cudnn_benchmark=self.cudnn_benchmark,
            compile=self.compile,
            sync_batchnorm=self.sync_batchnorm,
            samples_per_pass=self.samples_per_pass,
        )
