"""How a run runs, not what it computes: speed options, data loading, executors."""

from __future__ import annotations

import contextlib
from enum import Enum
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from bayesdistill.config.specs import _Strict
from bayesdistill.data import LoaderOptions
from bayesdistill.devices import check_device
from bayesdistill.train.accel import Acceleration, Precision, compile_mode
from bayesdistill.train.recorder import mirror_to_tensorboard


class ExecutorName(str, Enum):
    """Where a study's units run (`bayesdistill.runner.executors`)."""

    LOCAL = "local"
    """In the calling process, one after the other."""
    PROCESSES = "processes"
    """A pool of ``workers`` processes on this machine, each on a device from ``devices``."""
    RAY = "ray"
    """Ray tasks on a running cluster (``address``) or a local one (``workers`` CPUs)."""


DEFAULT_WORKERS = 2
"""Workers of a pool (or CPUs of a local Ray cluster) when neither ``workers`` nor
``units_per_device`` says how many."""


class ExecutorConfig(_Strict):
    """How a study's units are executed. It changes where they run, not their results, so
    it is not part of a run's identity: a study may be resumed with another executor.

    Several units on one GPU: with ``processes``, ``units_per_device: K`` gives every device
    listed in ``devices`` K workers (``workers`` is then len(devices)·K, and a ``workers``
    that says otherwise is refused); with ``ray``, ``gpus_per_unit: g`` makes each unit ask
    Ray for g of a GPU (0.25: four units per GPU).
    """

    name: ExecutorName = ExecutorName.LOCAL
    workers: int | None = Field(None, ge=1)
    """Worker processes (processes) or the CPUs of a local Ray cluster (ray); default:
    len(devices)·units_per_device where that is given, else 2 (`pool_size`)."""
    devices: list[str] = Field(default_factory=lambda: ["auto"], min_length=1)
    """The workers' devices: worker i runs on ``devices[i % len(devices)]``."""
    units_per_device: int | None = Field(None, ge=1)
    """processes: K workers on each device of ``devices``, each running one unit at a time.
    None: ``workers`` workers, spread over ``devices`` in turn."""
    unit_memory_gib: float | None = Field(None, gt=0)
    """processes, on CUDA: the GPU memory a unit needs; a unit starts beside others on its
    device only where that much is free. None: the largest peak measured of the same unit
    in another seed (else of any unit of its kind) so far in this study."""
    gpus_per_unit: float | None = None
    """ray: the share of a GPU each unit asks Ray for, in (0, 1] (0.25: four units per GPU);
    None: one GPU per unit. Used where the study runs on CUDA (on the CPU units ask for none)."""
    threads: int | None = Field(None, ge=1)
    """CPU threads per worker (default: the machine's CPUs divided among the workers)."""
    address: str | None = None
    """A Ray cluster to join (``ray.init(address=...)``); None starts a local one."""

    @field_validator("devices")
    @classmethod
    def _known_devices(cls, devices: list[str]) -> list[str]:
        return [check_device(device) for device in devices]

    @field_validator("gpus_per_unit")
    @classmethod
    def _gpu_share(cls, share: float | None) -> float | None:
        if share is not None and not 0 < share <= 1:  # NaN fails the comparison too
            raise ValueError(
                f"gpus_per_unit must be a share of one GPU in (0, 1], e.g. 0.25 for four "
                f"units per GPU (a unit runs on one GPU), got {share}"
            )
        return share

    @model_validator(mode="after")
    def _consistent_pool(self) -> ExecutorConfig:
        given = {
            "units_per_device": (self.units_per_device, ExecutorName.PROCESSES),
            "unit_memory_gib": (self.unit_memory_gib, ExecutorName.PROCESSES),
            "gpus_per_unit": (self.gpus_per_unit, ExecutorName.RAY),
        }
        hints = {
            ("units_per_device", ExecutorName.RAY): "; on Ray, gpus_per_unit=1/K packs K per GPU",
            ("gpus_per_unit", ExecutorName.PROCESSES): "; a pool packs K per GPU with "
            "units_per_device=K",
        }
        for key, (value, owner) in given.items():
            if value is not None and self.name is not owner:
                hint = hints.get((key, self.name), "")
                raise ValueError(
                    f"{key}={value} is an option of executor '{owner.value}', but the executor "
                    f"is '{self.name.value}'; use --executor {owner.value}, or drop {key} "
                    f"(runtime.executor.{key}=null){hint}"
                )
        if self.units_per_device is not None and self.workers is not None:
            pool = len(self.devices) * self.units_per_device
            if self.workers != pool:
                raise ValueError(
                    f"workers={self.workers} disagrees with units_per_device="
                    f"{self.units_per_device} on {len(self.devices)} device(s) "
                    f"({', '.join(self.devices)}), which makes {pool} workers; give only one "
                    f"of them (--workers or --units-per-device), or workers={pool}"
                )
        return self

    def pool_size(self) -> int:
        """Workers of the pool (or CPUs of a local Ray cluster): ``workers`` if given, else
        len(devices)·units_per_device if that is given, else `DEFAULT_WORKERS`."""
        if self.workers is not None:
            return self.workers
        if self.units_per_device is not None:
            return len(self.devices) * self.units_per_device
        return DEFAULT_WORKERS


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
    CUDA), ``channels_last``, ``cudnn_benchmark``, ``compile`` (false; true: torch.compile the
    forward pass; ``step``: the whole training step, see `bayesdistill.train.compiled`) and,
    for runs under torchrun, ``sync_batchnorm``; ``samples_per_pass``: how many of an IVON or
    mean-field VI teacher's S weight samples run in one vectorised forward pass (1: one after
    another). Data read through a DataLoader (streamed datasets)
    uses ``num_workers`` worker processes and ``pin_memory``. ``executor`` says where a
    study's units run.
    """

    precision: Precision = Precision.FP32
    channels_last: bool = False
    cudnn_benchmark: bool = False
    compile: bool | Literal["step"] = False
    """false and true keep their meaning (and old runs their identity); ``step`` is new."""
    sync_batchnorm: bool = False
    samples_per_pass: int = Field(1, ge=1)
    num_workers: int = Field(0, ge=0)
    pin_memory: bool = True
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_mode(cls, value: Any) -> bool | str:
        return compile_mode(value)

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
