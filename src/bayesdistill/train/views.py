"""An augmentation-aware teacher cache: the teacher's predictions on stored augmented views.

With augmentation a student sees a new random view of each example at every step, so a
plain cache of the teacher's predictions on the clean training set does not apply, and
asking the teacher on every batch costs one teacher forward pass per student step (S of
them for a Bayesian teacher with S weight samples). Following FKD (Shen & Xing, "A Fast
Knowledge Distillation Framework for Visual Recognition", ECCV 2022) and ReLabel (Yun et
al., CVPR 2021), `build_view_cache` draws V augmentation parameters per example (crop
offsets, flips, shifts: the integers of a `ParametricAugmentation`), asks the teacher once
per view (batched, under no_grad, any teacher kind) and stores the probabilities with the
parameters. During training, `ViewTargets.draw` picks one stored view per example,
rebuilds exactly that view from the clean input and returns it with its stored
probabilities: the teacher costs nothing per student step.

Storage: probabilities in float16, all C of them, or the top k (``top_k``) with the
remaining mass spread uniformly over the other C − k classes; rows are renormalised when
read. Memory: N·V·(2·k [+ 4·k for the class indices of top-k]) bytes plus N·V·P·2 bytes
of parameters (`cache_bytes`), logged before the cache is built. The trade-off: a student
sees V distinct views per example instead of a fresh one every epoch (FKD uses about as
many views as epochs; fewer views is cheaper to build and to hold).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bayesdistill.data.augment import Augmentation, is_parametric
from bayesdistill.data.labelled import LabelledData
from bayesdistill.errors import ConfigError
from bayesdistill.seeding import generator
from bayesdistill.train.accel import DEFAULT_ACCELERATION, Acceleration
from bayesdistill.train.batches import INFERENCE_BATCH_SIZE, iterate
from bayesdistill.train.protocol import Teacher

log = logging.getLogger("bayesdistill")

VIEW_STREAM = 13
"""Seed stream of the stored views: view v of a cache seeded s uses generator(s, 13, v)."""
PROB_DTYPE = torch.float16
PARAM_DTYPE = torch.int16
INDEX_DTYPE = torch.int32
DEFAULT_VIEWS = 10


def cache_bytes(n: int, views: int, num_classes: int, top_k: int | None, num_params: int) -> int:
    """Bytes a view cache of ``n`` examples × ``views`` views takes."""
    k = num_classes if top_k is None else top_k
    per_view = 2 * k + (0 if top_k is None else 4 * k) + 2 * num_params
    return n * views * per_view


@dataclass(frozen=True)
class ViewCache:
    """The teacher's probabilities on ``V`` stored augmented views of ``N`` examples.

    Attributes:
        params: augmentation parameters ``(N, V, P)`` (int16).
        values: probabilities ``(N, V, k)`` (float16): all C classes (``indices`` None) or
            the k largest.
        indices: class indices of ``values`` ``(N, V, k)`` (int32), or None (all classes).
        num_classes: C.
    """

    params: Tensor
    values: Tensor
    indices: Tensor | None
    num_classes: int

    def __len__(self) -> int:
        return int(self.params.shape[0])

    @property
    def views(self) -> int:
        return int(self.params.shape[1])

    @property
    def top_k(self) -> int | None:
        return None if self.indices is None else int(self.indices.shape[2])

    def probs(self, index: Tensor, view: Tensor) -> Tensor:
        """Probabilities ``(B, C)`` float32 of view ``view[b]`` of example ``index[b]``."""
        values = self.values[index, view].float()
        if self.indices is None:
            probs = values
        else:
            batch, k = values.shape
            rest = (1.0 - values.sum(1)).clamp_min(0.0) / max(self.num_classes - k, 1)
            probs = rest[:, None].expand(batch, self.num_classes).clone()
            probs.scatter_(1, self.indices[index, view].long(), values)
        return probs / probs.sum(1, keepdim=True)

    def subset(self, index: Tensor) -> ViewCache:
        """The cache of the examples at ``index`` (a student's training subset)."""
        index = index.to(self.params.device)
        return ViewCache(
            self.params[index],
            self.values[index],
            None if self.indices is None else self.indices[index],
            self.num_classes,
        )

    def to(self, device: torch.device | str) -> ViewCache:
        return ViewCache(
            self.params.to(device),
            self.values.to(device),
            None if self.indices is None else self.indices.to(device),
            self.num_classes,
        )

    def state(self) -> dict[str, Any]:
        return {
            "params": self.params.cpu(),
            "values": self.values.cpu(),
            "indices": None if self.indices is None else self.indices.cpu(),
            "num_classes": self.num_classes,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ViewCache:
        return cls(state["params"], state["values"], state["indices"], int(state["num_classes"]))


def check_view_options(augment: Augmentation | None, views: int, top_k: int | None) -> None:
    """Raise `ConfigError` unless a view cache can be built with these options."""
    if augment is None:
        raise ConfigError(
            "teacher_cache 'views' stores the teacher's predictions on augmented views, but "
            "the student trains without augmentation; use teacher_cache 'exact' (or 'auto'), "
            "or give the student an augmentation"
        )
    if not is_parametric(augment):
        raise ConfigError(
            "teacher_cache 'views' needs augmentations whose randomness can be stored (shift, "
            "random_crop, hflip, cifar); 'noise' is not one: use teacher_cache 'none' with it"
        )
    if views < 1:
        raise ConfigError(f"cache_views must be >= 1, got {views}")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"cache_top_k must be >= 1 (or null for all classes), got {top_k}")


@torch.no_grad()
def build_view_cache(
    teacher: Teacher,
    data: LabelledData,
    augment: Augmentation,
    *,
    views: int = DEFAULT_VIEWS,
    seed: int = 0,
    top_k: int | None = None,
    batch_size: int = INFERENCE_BATCH_SIZE,
    accel: Acceleration = DEFAULT_ACCELERATION,
) -> ViewCache:
    """Ask ``teacher`` once on ``views`` augmented views of every example of ``data``.

    View v of example i is ``augment.apply(x_i, params[i, v])`` with parameters drawn by
    ``augment.sample`` from ``generator(seed, VIEW_STREAM, v)``. Teacher passes run in
    batches of ``batch_size`` under ``accel``'s autocast, on the teacher's device; the
    cache lives on the CPU (`ViewCache.to` moves it).
    """
    check_view_options(augment, views, top_k)
    num_classes = int(teacher.num_classes)
    if top_k is not None and top_k >= num_classes:
        top_k = None  # all classes: nothing to compress
    n = len(data)
    input_shape = tuple(data.input_shape)
    num_params = int(augment.num_params)  # type: ignore[attr-defined]
    size = cache_bytes(n, views, num_classes, top_k, num_params)
    log.info(
        "teacher view cache: %d examples × %d views × %s probabilities (float16) = %.1f MB",
        n,
        views,
        f"top {top_k} of {num_classes}" if top_k else f"{num_classes}",
        size / 2**20,
    )
    params = torch.stack(
        [
            augment.sample(n, generator(seed, VIEW_STREAM, v), input_shape)  # type: ignore[attr-defined]
            for v in range(views)
        ],
        1,
    )  # (N, V, P)
    k = num_classes if top_k is None else top_k
    values = torch.empty(n, views, k, dtype=PROB_DTYPE, device="cpu")
    indices = None if top_k is None else torch.empty(n, views, k, dtype=INDEX_DTYPE, device="cpu")
    device = getattr(teacher, "device", torch.device("cpu"))
    start = 0
    with accel.teacher_inference(device):
        for x, _ in iterate(data, device, batch_size):
            rows = slice(start, start + len(x))
            for v in range(views):
                view = augment.apply(x, params[rows, v].to(device))  # type: ignore[attr-defined]
                probs = teacher.predict_proba(accel.prepare_input(view)).float().cpu()
                if indices is None:
                    values[rows, v] = probs.to(PROB_DTYPE)
                else:
                    top = probs.topk(k, dim=1)
                    values[rows, v] = top.values.to(PROB_DTYPE)
                    indices[rows, v] = top.indices.to(INDEX_DTYPE)
            start += len(x)
    return ViewCache(params.to(PARAM_DTYPE), values, indices, num_classes)


class ViewTargets:
    """A `ViewSource`: one stored view per example and step, rebuilt, with its stored
    probabilities (the training loop calls `draw`)."""

    def __init__(self, cache: ViewCache, augment: Augmentation, device: torch.device) -> None:
        if not is_parametric(augment):
            check_view_options(augment, cache.views, cache.top_k)
        self.cache = cache.to(device)
        self.augment = augment

    def draw(self, x: Tensor, index: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        # drawn on the generator's device (the loop's is on the CPU, so a student picks the
        # same views on every device), then moved to the cache
        view = torch.randint(
            self.cache.views, (len(index),), generator=generator, device=generator.device
        )
        view = view.to(self.cache.params.device)
        index = index.to(self.cache.params.device)
        params = self.cache.params[index, view].long()
        x = self.augment.apply(x, params)  # type: ignore[attr-defined]
        return x, self.cache.probs(index, view)
