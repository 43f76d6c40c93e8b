"""The GPU fast path, opt-in: mixed precision, channels-last, cuDNN autotuning, compilation.

`Acceleration` says how a network is trained and how a teacher is asked, independently of
*what* is trained (`TrainSettings`): with the defaults (fp32, nothing else) training is
exactly the plain PyTorch loop, on the CPU and on a GPU.

- ``precision``: ``bf16`` or ``fp16`` run forward passes (the student's and the teacher's)
  under ``torch.autocast``; fp16 also scales the loss with a ``GradScaler`` (bf16 has
  fp32's exponent range and needs none). fp16 autocast is a CUDA feature: asked for on
  the CPU it is an error (use bf16, which the CPU supports).
- ``channels_last``: image networks and their input batches in NHWC memory format, which
  tensor cores prefer; no effect on other shapes.
- ``cudnn_benchmark``: let cuDNN pick the fastest convolution algorithm for each input
  shape (sets ``torch.backends.cudnn.benchmark``; runs become non-deterministic).
- ``compile``: ``true`` compiles the network's training forward pass with ``torch.compile``;
  ``"step"`` (`COMPILE_STEP`) compiles the whole training step instead (forward, loss,
  backward and the optimiser's update; CUDA graphs on a GPU), where the step can be
  captured, and says why once where it cannot (`bayesdistill.train.compiled`).
- ``sync_batchnorm``: in a distributed run, BatchNorm layers use statistics over the
  global batch (``nn.SyncBatchNorm``), so the run matches a single-process run.
- ``samples_per_pass``: a teacher that averages over S stored weight samples (IVON,
  mean-field VI) evaluates this many of them in one vectorised forward pass
  (``torch.func.vmap``) instead of one after another; 1 (the default) is the plain loop
  (or what an enclosing `vectorized_samples` block says).
  The probabilities agree with the loop's to float rounding (summed in another order), not
  bit for bit; the cost is that many copies of the teacher's activations at once.

Teacher predictions run inside `Acceleration.teacher_inference` (autocast and
`vectorized_samples`); from Python, ``with vectorized_samples(10): teacher.predict_proba(x)``
does the second alone.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from bayesdistill.errors import ConfigError


class Precision(str, Enum):
    """Floating-point precision of forward passes."""

    FP32 = "fp32"
    """Everything in float32 (the default; exact resume and bit-reproducible CPU runs)."""
    BF16 = "bf16"
    """Autocast to bfloat16 (CPU and recent GPUs); no loss scaling needed."""
    FP16 = "fp16"
    """Autocast to float16 with a GradScaler (CUDA only)."""


AUTOCAST_DTYPES = {Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}

COMPILE_STEP = "step"
"""The ``compile`` value that compiles the whole training step (`bayesdistill.train.compiled`).
``false`` and ``true`` stay booleans, so that configs and checkpoints from before the mode
keep their identity and fingerprints."""
COMPILE_CHOICES = (
    "false (no compilation), true (torch.compile the network's forward pass) or 'step' "
    "(torch.compile the whole training step: forward, loss, backward and optimiser update)"
)


def compile_mode(value: object) -> bool | str:
    """``value`` as a ``compile`` setting: False, True or `COMPILE_STEP`.

    0 and 1 count as booleans (as the config's boolean field always read them); anything
    else is refused with a `ConfigError` that lists the allowed values.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if value == COMPILE_STEP:
        return COMPILE_STEP
    raise ConfigError(f"compile must be {COMPILE_CHOICES}; got {value!r}")


@dataclass(frozen=True)
class Acceleration:
    """How networks are run (see the module docstring); defaults change nothing."""

    precision: Precision = Precision.FP32
    channels_last: bool = False
    cudnn_benchmark: bool = False
    compile: bool | str = False
    sync_batchnorm: bool = False
    samples_per_pass: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "compile", compile_mode(self.compile))
        try:
            object.__setattr__(self, "precision", Precision(self.precision))
        except ValueError:
            allowed = ", ".join(p.value for p in Precision)
            raise ConfigError(
                f"precision must be one of {allowed}, got {self.precision!r}"
            ) from None
        _check_samples_per_pass(self.samples_per_pass)

    def check(self, device: torch.device | str) -> None:
        """Raise `ConfigError` for options that cannot work on ``device`` or here."""
        device = torch.device(device)
        if self.precision is Precision.FP16 and device.type != "cuda":
            raise ConfigError(
                f"precision 'fp16' needs a CUDA device (autocast to float16 with a GradScaler), "
                f"but training runs on '{device}'; use 'bf16' (supported on the CPU) or 'fp32'"
            )
        # compile 'step' is not refused: it says so once and trains uncompiled (`compiled`)
        if self.compiles_forward and not compile_available():
            raise ConfigError(
                "compile: true needs torch.compile, which is not available in this PyTorch "
                f"({torch.__version__}) on this platform; set compile: false"
            )

    @property
    def compiles_forward(self) -> bool:
        """``compile: true``: only the network's forward pass is compiled."""
        return self.compile is True

    @property
    def compiles_step(self) -> bool:
        """``compile: step``: the whole training step is compiled where it can be."""
        return self.compile == COMPILE_STEP

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return AUTOCAST_DTYPES.get(self.precision)

    @contextlib.contextmanager
    def autocast(self, device: torch.device | str) -> Iterator[None]:
        """Autocast to the chosen precision on ``device`` (nothing for fp32)."""
        dtype = self.autocast_dtype
        if dtype is None:
            yield
            return
        with torch.autocast(torch.device(device).type, dtype=dtype):
            yield

    def teacher_inference(self, device: torch.device | str) -> contextlib.AbstractContextManager:
        """How a teacher is asked: `autocast`, and `vectorized_samples` when
        ``samples_per_pass`` > 1 (at 1 an enclosing `vectorized_samples` block holds)."""
        if self.samples_per_pass == 1:  # the default: no second context in the training step
            return self.autocast(device)
        return self._vectorized_autocast(device)

    @contextlib.contextmanager
    def _vectorized_autocast(self, device: torch.device | str) -> Iterator[None]:
        with self.autocast(device), vectorized_samples(self.samples_per_pass):
            yield

    def grad_scaler(self, device: torch.device | str) -> torch.amp.GradScaler | None:
        """A GradScaler for fp16 on CUDA, else None."""
        if self.precision is Precision.FP16:
            return torch.amp.GradScaler(torch.device(device).type)
        return None

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to channels-last in place where asked; set cuDNN autotuning."""
        if self.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        if self.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return model

    def prepare_input(self, x: Tensor) -> Tensor:
        """``x`` in channels-last format when asked and ``x`` is an image batch."""
        if self.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def compiled(self, module: nn.Module) -> nn.Module:
        """``torch.compile(module)`` when its forward pass is to be compiled (``compile:
        true``), else ``module`` (``compile: step`` compiles the step around it instead)."""
        return torch.compile(module) if self.compiles_forward else module  # type: ignore[return-value]

    def facts(self) -> dict[str, Any]:
        """The options as plain values (for fingerprints and run records)."""
        return {
            "precision": self.precision.value,
            "channels_last": self.channels_last,
            "cudnn_benchmark": self.cudnn_benchmark,
            "compile": self.compile,
            "sync_batchnorm": self.sync_batchnorm,
            # only when set, so that fingerprints of runs from before the option stay valid
            **({"samples_per_pass": self.samples_per_pass} if self.samples_per_pass != 1 else {}),
        }


_SAMPLES_PER_PASS: contextvars.ContextVar[int] = contextvars.ContextVar(
    "bayesdistill_samples_per_pass", default=1
)


@contextlib.contextmanager
def vectorized_samples(samples_per_pass: int) -> Iterator[None]:
    """Within the block, teachers that average over stored weight samples (IVON, mean-field
    VI) evaluate ``samples_per_pass`` of them per vectorised forward pass (1: one at a
    time, the default outside any block)."""
    _check_samples_per_pass(samples_per_pass)
    token = _SAMPLES_PER_PASS.set(samples_per_pass)
    try:
        yield
    finally:
        _SAMPLES_PER_PASS.reset(token)


def samples_per_pass() -> int:
    """The number of weight samples a teacher evaluates per forward pass here (see
    `vectorized_samples`)."""
    return _SAMPLES_PER_PASS.get()


def _check_samples_per_pass(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"samples_per_pass must be a whole number >= 1 (1: one weight sample per forward "
            f"pass; S: all of a teacher's S samples in one vectorised pass), got {value!r}"
        )


DEFAULT_ACCELERATION = Acceleration()


def compile_available() -> bool:
    """Whether ``torch.compile`` can be used here (it needs a supported Python/platform)."""
    if not hasattr(torch, "compile"):
        return False
    try:
        from torch._dynamo import is_dynamo_supported
    except Exception:  # an import failure of torch's compiler stack, whatever its type
        return False
    return bool(is_dynamo_supported())
