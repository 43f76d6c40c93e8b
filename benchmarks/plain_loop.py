"""Hand-written reference loops for `student_step.py`: what one would write in plain PyTorch
to train the config's student (random crop with padding 4 + horizontal flip on the device,
SGD with momentum, one-hot CE or KD at α = 0.5, T = 4 against stored probabilities), one
student at a time or K students stacked into one vmapped model."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bayesdistill.data import ArrayData
from bayesdistill.models import create_model
from bayesdistill.seeding import seeded
from bayesdistill.train.accel import Acceleration

CLASSES, PADDING = 100, 4
BATCH, LR, MOMENTUM, WEIGHT_DECAY = 64, 0.05, 0.9, 5e-4
KD_OPTIONS = {"alpha": 0.5, "temperature": 4.0}


def random_data(n: int, shape: tuple[int, ...], device: torch.device) -> tuple[ArrayData, Tensor]:
    """Standard-normal images with uniform labels, and random teacher probabilities."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((n, *shape), generator=gen)
    y = torch.randint(CLASSES, (n,), generator=gen)
    probs = torch.softmax(2.0 * torch.randn(n, CLASSES, generator=gen), 1)
    return ArrayData(x.to(device), y.to(device), CLASSES), probs.to(device)


def distinct_targets(probs: Tensor, k: int) -> Tensor:
    """``k`` teachers' probabilities, ``[k, n, classes]``: ``probs`` with its classes rolled
    by 0, 1, ..., k - 1 places (a different teacher per stacked student)."""
    return torch.stack([probs.roll(i, dims=1) for i in range(k)])


def student(model: str, shape: tuple[int, ...], device: torch.device, seed: int = 0) -> nn.Module:
    with seeded(seed):
        return create_model(model, shape, CLASSES).to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_run(
    model: str,
    data: ArrayData,
    probs: Tensor,
    epochs: int,
    accel: Acceleration,
    distil: bool,
    network: nn.Module | None = None,
) -> float:
    """Seconds of the last of ``epochs`` epochs of the hand-written loop (see the module
    docstring), training ``network`` (default: a fresh student) in place."""
    network = student(model, data.input_shape, data.x.device) if network is None else network
    accel.prepare_model(network)
    network.train()
    optimizer = torch.optim.SGD(
        network.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
    )

    def loss(index: Tensor, x: Tensor) -> Tensor:
        with accel_autocast(accel, x.device):
            logits = network(x)
        logits = logits.float()
        if distil:
            return plain_kd(logits, data.y[index], probs[index])
        return F.cross_entropy(logits, data.y[index])

    return train_epochs(data, epochs, accel, optimizer, loss)


def stacked_run(
    model: str,
    data: ArrayData,
    probs: Tensor,
    epochs: int,
    accel: Acceleration,
    networks: list[nn.Module] | None = None,
) -> float:
    """Seconds of the last of ``epochs`` epochs of ``len(probs)`` students trained as one
    stacked model (see the module docstring), each by KD against its own row of ``probs``
    (``[k, n, classes]``); the plain loop's batches, augmentation and optimiser. ``networks``
    (default: fresh students seeded 0, 1, ...) get their trained weights and batch-norm
    statistics back."""
    device = data.x.device
    if networks is None:
        networks = [student(model, data.input_shape, device, seed=i) for i in range(len(probs))]
    params, buffers = torch.func.stack_module_state(networks)
    skeleton = copy.deepcopy(networks[0]).to("meta")

    def one(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
        return torch.func.functional_call(skeleton, (p, b), (x,))

    forward = torch.vmap(one, in_dims=(0, 0, None))
    optimizer = torch.optim.SGD(
        params.values(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
    )

    def loss(index: Tensor, x: Tensor) -> Tensor:
        with accel_autocast(accel, x.device):
            logits = forward(params, buffers, x)
        logits, y = logits.float(), data.y[index]
        return sum(plain_kd(logits[i], y, probs[i, index]) for i in range(len(probs)))

    seconds = train_epochs(data, epochs, accel, optimizer, loss)
    trained = params | buffers
    with torch.no_grad():
        for i, network in enumerate(networks):
            for name, tensor in [*network.named_parameters(), *network.named_buffers()]:
                tensor.copy_(trained[name][i])
    return seconds


def train_epochs(
    data: ArrayData,
    epochs: int,
    accel: Acceleration,
    optimizer: torch.optim.Optimizer,
    loss: Callable[[Tensor, Tensor], Tensor],
) -> float:
    """``epochs`` epochs of shuffled batches, each cropped and flipped on the device, of
    ``loss(index, x)`` → backward → ``optimizer`` step; seconds of the last epoch."""
    device = data.x.device
    gen = torch.Generator(device=device).manual_seed(0)
    layout = torch.channels_last if accel.channels_last else torch.preserve_format
    n = len(data)
    tic = time.perf_counter()
    for _ in range(epochs):
        synchronize(device)
        tic = time.perf_counter()  # the last epoch's start
        order = torch.randperm(n, generator=gen, device=device)
        for start in range(0, n, BATCH):
            index = order[start : start + BATCH]
            x = crop_and_flip(data.x[index], gen).contiguous(memory_format=layout)
            value = loss(index, x)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
    synchronize(device)
    return time.perf_counter() - tic


def accel_autocast(accel: Acceleration, device: torch.device) -> torch.autocast:
    """Autocast to ``accel``'s precision on ``device`` (off at fp32)."""
    dtype = accel.autocast_dtype
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def plain_kd(logits: Tensor, y: Tensor, soft: Tensor) -> Tensor:
    """KD at α = 0.5, T = 4 written out: (1 − α)·CE + α·T²·KL(tempered teacher ‖ student)."""
    t = KD_OPTIONS["temperature"]
    tempered = soft.pow(1 / t)
    kl = F.kl_div(
        F.log_softmax(logits / t, 1), tempered / tempered.sum(1, True), reduction="batchmean"
    )
    return (1 - KD_OPTIONS["alpha"]) * F.cross_entropy(logits, y) + KD_OPTIONS["alpha"] * t * t * kl


def crop_and_flip(x: Tensor, gen: torch.Generator) -> Tensor:
    """Random crop with zero padding 4 and a horizontal flip with probability ½, drawn and
    applied on ``x``'s device."""
    b, _, h, w = x.shape
    padded = F.pad(x, (PADDING,) * 4)
    top = torch.randint(0, 2 * PADDING + 1, (b, 1), generator=gen, device=x.device)
    left = torch.randint(0, 2 * PADDING + 1, (b, 1), generator=gen, device=x.device)
    rows = (top + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (left + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[batch, channel, rows, cols]
    flip = torch.rand(b, generator=gen, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)
