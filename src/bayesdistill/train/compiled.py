"""Whole-step compilation (``runtime.compile: step``): one training step, captured.

At a small batch (WRN-16-2 at batch 64) a GPU step is bound by Python and kernel-launch
overhead, not by the GPU; compiling only the forward pass (``compile: true``) leaves the
backward pass and the optimiser's update as hundreds of separate launches. `CompiledStep`
hands ``torch.compile`` the whole step instead:

    objective (forward + loss) → backward → gradient clipping → optimiser.step()

Dynamo breaks the graph at ``loss.backward()``, so the step becomes three compiled pieces:
the forward pass with its loss (AOTAutograd compiles the matching backward graph), then
clipping and the optimiser's update (PyTorch's compiled-optimiser path). On CUDA they are
compiled with ``mode="reduce-overhead"``, which replays each piece as a CUDA graph (one
launch instead of hundreds); on the CPU the default mode fuses the kernels. The
gradients are reset (``zero_grad``) before the compiled call, outside it: PyTorch keeps
``zero_grad`` out of graphs.

How the step's moving parts are handled:

- **Learning-rate schedule.** The scheduler writes ``param_group["lr"]`` every step; a
  Python number there would be a constant of the compiled graph and force a recompilation
  at every change. The optimiser's learning rates become 0-d float32 tensors on the
  training device (`prepare_optimizer`), which the scheduler updates in place
  (PyTorch's recipe "compiling the optimizer with an LR scheduler"); eager SGD casts its
  Python lr to float32 too, so the value is the same.
- **Optimiser state.** The first step of a fresh optimiser runs uncompiled and creates its
  state (SGD's momentum buffers) as ordinary tensors: created inside a CUDA graph they
  would live in memory that later replays reuse. The optimiser's step is then compiled
  once, with its state; Adam is made ``capturable`` on CUDA (its step counters on the GPU).
  A resumed optimiser has its state, and its first step is compiled.
- **Shapes.** The step is compiled for the shape of the first batch, with dynamic shapes
  off. A batch of another shape (the last, partial batch of an epoch) runs the same step
  uncompiled: one eager step per epoch costs less than compiling, and capturing as a CUDA
  graph, a second shape (or a dynamic-shape graph for every batch).
- **Teacher targets** come from the loop, computed before the step (a cached table's
  look-up, a stored view, or a teacher asked in Python): only the student's step is
  captured.
- **Named loss terms** are returned by the compiled step, summed on the device as before.

What is not captured (the step runs uncompiled, and `capture_obstacle` names why in one
logged warning per training): fp16's GradScaler (its inf/NaN check and skipped steps are
decided on the host), a training's own step function (IVON's ``ivon_step``), an objective
that reads the fractional epoch (warm-up losses such as ``dkd``, the SVRG correction of
``self_distill_vr``: a Python number that changes every step would recompile every step),
an objective other than `LogitLoss` and `WeightedSum`, feature terms whose teacher features
are computed per batch, distributed (DDP) training, and platforms without
``torch.compile``. The compiled step computes what the eager one does up to float rounding
(fused kernels sum in another order), not bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from bayesdistill.train.accel import COMPILE_STEP, Acceleration, compile_available
from bayesdistill.train.objective import LogitLoss, Objective, StepInputs, WeightedSum
from bayesdistill.train.targets import CachedTargets
from bayesdistill.train.variance_reduction import SVRGCorrection

__all__ = ["CompiledStep", "StepResult", "capture_obstacle", "compiled_step", "prepare_optimizer"]

log = logging.getLogger("bayesdistill")

CUDA_MODE = "reduce-overhead"
"""``torch.compile`` mode on CUDA: Inductor's kernels replayed as CUDA graphs."""

READS_EPOCH = (
    "reads the fractional epoch, a Python number that changes every step and would "
    "recompile the step at every step"
)

StepResult = tuple[Tensor, list[Mapping[str, Tensor]]]
"""A step's (detached, weighted) loss and the named terms of each loss evaluation in it
(none for a single loss; `fit` logs their mean)."""


def capture_obstacle(
    objective: Objective,
    *,
    own_step: Callable[..., object] | None,
    grad_scaler: bool,
    distributed: bool,
) -> str | None:
    """Why the whole training step cannot be compiled here, or None when it can.

    Args:
        objective: what the step minimises.
        own_step: the training's own step function (IVON's ``ivon_step``), None for the
            default ``sgd_step``.
        grad_scaler: whether the loss is scaled (fp16).
        distributed: whether this is one rank of a distributed (DDP) run.
    """
    if not compile_available():
        return (
            f"torch.compile is not available in this PyTorch ({torch.__version__}) on this platform"
        )
    if grad_scaler:
        return (
            "precision 'fp16' scales the loss with a GradScaler, whose inf/NaN check and "
            "skipped steps are decided on the host; use precision 'bf16' to compile the step"
        )
    if own_step is not None:
        function = getattr(own_step, "func", own_step)  # a functools.partial's function
        name = getattr(function, "__name__", type(function).__name__)
        return f"this training takes its own step function ({name}), which is run as given"
    if distributed:
        return (
            "a distributed run averages gradients in DDP's hooks during the backward pass, "
            "which are not captured"
        )
    return _objective_obstacle(objective)


def _objective_obstacle(objective: Objective) -> str | None:
    if isinstance(objective, LogitLoss):
        reads_epoch = bool(objective.runtime)
    elif isinstance(objective, WeightedSum):
        reads_epoch = any(term.runtime for term in objective.terms)
        features = objective.teacher_features
        if features is not None and not isinstance(features, CachedTargets):
            return (
                "its feature terms ask the teacher's network for features on every batch "
                "(a teacher run in Python per step)"
            )
    elif isinstance(objective, SVRGCorrection):
        return f"the SVRG correction of self_distill_vr {READS_EPOCH}"
    else:
        return (
            f"its objective ({type(objective).__name__}) is not one the step is known to "
            "capture (a single loss on the logits or a weighted sum of loss terms)"
        )
    if reads_epoch:
        return f"its loss warms up: it {READS_EPOCH}"
    return None


def compiled_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    objective: Objective,
    *,
    accel: Acceleration,
    device: torch.device,
    max_norm: float | None,
    own_step: Callable[..., object] | None,
    grad_scaler: bool,
    distributed: bool,
    description: str = "train",
) -> CompiledStep | None:
    """The compiled training step when ``accel`` asks for it (``compile: step``) and it can
    be captured; else None. Where it was asked for but cannot be captured, one warning on
    the ``bayesdistill`` logger names the reason (`capture_obstacle`, which explains the
    arguments)."""
    if not accel.compiles_step:
        return None
    obstacle = capture_obstacle(
        objective, own_step=own_step, grad_scaler=grad_scaler, distributed=distributed
    )
    if obstacle is not None:
        log.warning(
            "%s: compile '%s' cannot capture this training step: %s; it is trained "
            "uncompiled (eager)",
            description,
            COMPILE_STEP,
            obstacle,
        )
        return None
    return CompiledStep(net, optimizer, objective, accel=accel, device=device, max_norm=max_norm)


def prepare_optimizer(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Make ``optimizer``'s step capturable, in place.

    Each parameter group's ``lr`` becomes a 0-d float32 tensor on ``device``: a learning-rate
    scheduler then updates the tensor in place (``fill_``) instead of replacing a Python
    number, which a compiled optimiser step would hold as a constant and recompile for at
    every change. A tensor already there (a resumed checkpoint of a compiled run) is kept,
    moved to ``device`` if needed. On CUDA, optimisers with a ``capturable`` option (Adam)
    get it set, so that their step counters live on the GPU, inside the CUDA graph.
    """
    for group in optimizer.param_groups:
        lr = group["lr"]
        if isinstance(lr, Tensor):
            group["lr"] = lr.detach().to(device=device, dtype=torch.float32).reshape(())
        else:
            group["lr"] = torch.tensor(float(lr), dtype=torch.float32, device=device)
        if device.type == "cuda" and "capturable" in group:
            group["capturable"] = True


class CompiledStep:
    """One training step of ``net`` compiled with ``torch.compile`` (module docstring).

    ``step(inputs, weight)`` resets the gradients, then runs forward, loss (times
    ``weight``, `Batch.weight`), backward, clipping to L2 norm ≤ ``max_norm`` (if given)
    and ``optimizer.step()``, and returns the detached loss and the named terms. The first
    call of a fresh optimiser runs uncompiled: it creates the optimiser's state (SGD's
    momentum buffers) as ordinary tensors, not as outputs of a CUDA graph whose memory the
    next replay may reuse, and the optimiser's step is compiled once, with its state. Other
    calls of the first call's batch shape run compiled; other shapes run uncompiled. The
    optimiser is made capturable (`prepare_optimizer`).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        objective: Objective,
        *,
        accel: Acceleration,
        device: torch.device,
        max_norm: float | None = None,
    ) -> None:
        self.net = net
        self.optimizer = optimizer
        self.objective = objective
        self.device = device
        self.autocast_dtype = accel.autocast_dtype
        self.max_norm = max_norm
        self.cuda_graphs = device.type == "cuda"
        prepare_optimizer(optimizer, device)
        self.shape: tuple[int, ...] | None = None
        """The input shape the step is compiled for (the first batch's; None before it)."""
        self._make_state = not optimizer.state
        """Whether the next step runs uncompiled to create the optimiser's state (a resumed
        optimiser has its state: its first step is compiled, as in the uninterrupted run)."""
        self._compiled = torch.compile(
            self._step, mode=CUDA_MODE if self.cuda_graphs else None, dynamic=False
        )

    def __call__(self, inputs: StepInputs, weight: float = 1.0) -> StepResult:
        self.optimizer.zero_grad(set_to_none=True)
        shape = tuple(inputs.x.shape)
        self.shape = self.shape or shape
        if self._make_state or shape != self.shape:
            self._make_state = False
            loss, terms = self._step(inputs, weight)
        else:
            if self.cuda_graphs:
                # a new iteration: the previous step's graph outputs (read by the loop
                # before this call) may be overwritten
                torch.compiler.cudagraph_mark_step_begin()
            loss, terms = self._compiled(inputs, weight)
        return loss, [terms] if terms else []

    def release(self) -> None:
        """Drop the process's compiled code and CUDA graphs (``torch.compiler.reset()``),
        once training ends.

        The optimiser's compiled ``step`` is cached on PyTorch's ``SGD.step`` code, guarded
        by the optimiser's identity: every later training in the process (a study's next
        student) would add entries there, and after a few the recompilation limit has
        Dynamo run the update uncompiled, with only PyTorch's own warning. The reset also
        frees the CUDA-graph memory pools. Other compiled functions in the process compile
        again when next called; Inductor's disk cache keeps that quick. The last step's
        gradients are dropped first: on CUDA they live in the graphs' memory.
        """
        self.optimizer.zero_grad(set_to_none=True)
        torch.compiler.reset()

    def _step(self, inputs: StepInputs, weight: float) -> tuple[Tensor, Mapping[str, Tensor]]:
        if self.autocast_dtype is None:
            loss, terms = self.objective(self.net, inputs)
        else:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                loss, terms = self.objective(self.net, inputs)
        if weight != 1.0:
            loss = loss * weight
        loss.backward()
        if self.max_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.max_norm)
        self.optimizer.step()
        return loss.detach(), terms
