"""Standardisation of inputs with statistics of the training split (or published constants).

`Standardization` names the modes; a `Standardizer` is the map ``x ↦ (x − loc) / scale``,
fitted to tensors in memory (`Standardizer.fit`) or in one pass over batches read from disk
(`fit_in_batches`, sums in float64).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor

from bayesdistill.errors import ConfigError, DataError


class Standardization(str, Enum):
    """How inputs are standardised with statistics of the training split."""

    FEATURE = "feature"
    """Per input coordinate: subtract the mean and divide by the std of each feature."""
    GLOBAL = "global"
    """One mean and one std over all training inputs (keeps the shape of a signal)."""
    CHANNEL = "channel"
    """Per channel (axis 1 of ``(N, C, ...)``): one mean and std per image colour channel,
    from the training split. For ``(N, d)`` vectors each feature is a channel (= feature)."""
    DATASET = "dataset"
    """The fixed constants the dataset publishes (`RawDataset.normalization`, e.g. the
    standard CIFAR per-channel mean/std), whatever the training split; an error for a
    source that has none."""
    NONE = "none"
    """Leave inputs as they are."""


@dataclass(frozen=True)
class Standardizer:
    """``x ↦ (x − loc) / scale`` with ``loc`` and ``scale`` broadcastable to one example."""

    loc: Tensor
    scale: Tensor

    @classmethod
    def fit(cls, x: Tensor, mode: Standardization | str) -> Standardizer:
        """Statistics of ``x`` ``(N, *input_shape)``; ``loc``/``scale`` have ``input_shape``.

        ``Standardization.DATASET`` has nothing to fit: use `Standardizer.per_channel` with
        the published constants (`make_splits` does).
        """
        mode = Standardization(mode)
        shape = x.shape[1:]
        if mode is Standardization.DATASET:
            raise _nothing_to_fit()
        if mode is Standardization.NONE or x.shape[0] < 2:
            return cls(torch.zeros(shape), torch.ones(shape))
        if mode is Standardization.GLOBAL:
            loc = x.mean().expand(shape).clone()
            scale = x.std().clamp_min(1e-12).expand(shape).clone()
        elif mode is Standardization.CHANNEL:
            per_channel = x.transpose(0, 1).reshape(shape[0], -1)  # (C, N·rest)
            loc = _expand_channels(per_channel.mean(1), shape)
            scale = _expand_channels(per_channel.std(1).clamp_min(1e-12), shape)
        else:
            loc = x.mean(0)
            scale = x.std(0).clamp_min(1e-12)
        return cls(loc, scale)

    @classmethod
    def per_channel(
        cls, mean: tuple[float, ...], std: tuple[float, ...], shape: tuple[int, ...]
    ) -> Standardizer:
        """Fixed per-channel constants for inputs of ``shape = (C, ...)``: channel c maps
        ``x ↦ (x − mean[c]) / std[c]`` (what ``torchvision.transforms.Normalize`` does)."""
        if len(mean) != shape[0] or len(std) != shape[0]:
            raise DataError(
                f"per-channel constants need {shape[0]} values each for inputs of shape "
                f"{tuple(shape)}, got {len(mean)} means and {len(std)} stds"
            )
        if min(std) <= 0:
            raise DataError(f"per-channel stds must be positive, got {tuple(std)}")
        return cls(
            _expand_channels(torch.tensor(mean, dtype=torch.float32), shape),
            _expand_channels(torch.tensor(std, dtype=torch.float32), shape),
        )

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self.loc.to(x)) / self.scale.to(x)

    def inverse(self, x: Tensor) -> Tensor:
        return x * self.scale.to(x) + self.loc.to(x)

    def state(self) -> dict[str, Tensor]:
        return {"loc": self.loc, "scale": self.scale}

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> Standardizer:
        return cls(state["loc"], state["scale"])


def _nothing_to_fit() -> ConfigError:
    return ConfigError(
        "standardisation 'dataset' uses the constants the dataset publishes, not "
        "statistics fitted to data; build it with Standardizer.per_channel"
    )


def _expand_channels(values: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """A ``(C,)`` vector broadcast to ``shape = (C, ...)``, as its own tensor."""
    return values.view(-1, *([1] * (len(shape) - 1))).expand(tuple(shape)).clone()


@torch.no_grad()
def fit_in_batches(
    batches: Iterable[Tensor], shape: tuple[int, ...], mode: Standardization | str
) -> Standardizer:
    """`Standardizer.fit` on inputs read batch by batch, each ``(B, *shape)``: one pass, sums
    in float64 (the sample std, as ``Tensor.std``); the batches are not read for ``none``.

    ``Standardization.DATASET`` has nothing to fit, as for `Standardizer.fit`.
    """
    mode = Standardization(mode)
    if mode is Standardization.DATASET:
        raise _nothing_to_fit()
    identity = Standardizer(torch.zeros(shape), torch.ones(shape))
    if mode is Standardization.NONE:
        return identity
    reduce_dims = {
        Standardization.FEATURE: (0,),
        Standardization.GLOBAL: tuple(range(len(shape) + 1)),
        Standardization.CHANNEL: (0, *range(2, len(shape) + 1)),
    }[mode]
    total: Tensor | float = 0.0
    squares: Tensor | float = 0.0
    count = examples = 0
    for x in batches:
        x = x.double()
        total = total + x.sum(reduce_dims)
        squares = squares + x.square().sum(reduce_dims)
        count += x.numel() // _kept_size(x, reduce_dims)
        examples += x.shape[0]
    if examples < 2:
        return identity
    mean = total / count  # type: ignore[operator]
    var = (squares - count * mean.square()) / (count - 1)  # type: ignore[union-attr]
    std = var.clamp_min(0).sqrt().clamp_min(1e-12)
    return Standardizer(_broadcast(mean, mode, shape), _broadcast(std, mode, shape))


def _kept_size(x: Tensor, reduce_dims: tuple[int, ...]) -> int:
    """Number of statistics (entries not reduced over) in batch ``x``."""
    kept = 1
    for d in range(x.ndim):
        if d not in reduce_dims:
            kept *= x.shape[d]
    return kept


def _broadcast(stat: Tensor, mode: Standardization, shape: tuple[int, ...]) -> Tensor:
    stat = stat.float()
    if mode is Standardization.GLOBAL:
        return stat.expand(shape).clone()
    if mode is Standardization.CHANNEL:
        return stat.view(-1, *([1] * (len(shape) - 1))).expand(shape).clone()
    return stat.reshape(shape).clone()
