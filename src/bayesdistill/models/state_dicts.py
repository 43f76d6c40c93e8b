"""Where a checkpoint keeps its state dict, and what its keys say.

A checkpoint holds its state dict bare or under one of the usual container keys
(`CONTAINER_KEYS`: RepDistiller and mdistiller save ``{"model": sd, ...}``, bayesdistill's
own network files ``{"weights": sd, "spec": ...}``); ``nn.DataParallel``/DDP and
``torch.compile`` prefix every key (`WRAPPER_PREFIXES`). A key's last part names the kind of
tensor (`tensor_kind`: ``weight``, ``bias``, ``running_mean``, ...); BatchNorm's
``num_batches_tracked`` counters (`is_bn_counter`) are absent from old checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from bayesdistill.errors import CheckpointError

CONTAINER_KEYS = ("model", "state_dict", "model_state_dict", "net", "weights")
"""Keys under which checkpoints commonly keep the state dict, tried in this order."""
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""Prefixes added by ``nn.DataParallel``/DDP and by ``torch.compile``."""
BN_COUNTER = "num_batches_tracked"
"""The last part of the key of a BatchNorm layer's step counter."""


def unwrap_state_dict(
    obj: Any, *, source: str = "the checkpoint"
) -> tuple[dict[str, Tensor], str | None]:
    """The state dict in ``obj`` and the container key it sat under (``None``: ``obj`` itself).

    Looks one and two levels deep under `CONTAINER_KEYS` (``{"model": {"state_dict": sd}}``).
    """
    if _is_state_dict(obj):
        return dict(obj), None
    if isinstance(obj, Mapping):
        for key in CONTAINER_KEYS:
            inner = obj.get(key)
            if _is_state_dict(inner):
                return dict(inner), key
            if isinstance(inner, Mapping):
                for sub in CONTAINER_KEYS:
                    if _is_state_dict(inner.get(sub)):
                        return dict(inner[sub]), f"{key}.{sub}"
        found = ", ".join(f"'{k}'" for k in list(obj)[:8]) or "no keys"
        raise CheckpointError(
            f"{source} holds no state dict: a dict with {found}, none of them a name → tensor "
            f"mapping. Expected a state dict, bare or under one of "
            f"{', '.join(repr(k) for k in CONTAINER_KEYS)}."
        )
    raise CheckpointError(
        f"{source} holds a {type(obj).__name__}, not a state dict (a dict of tensors, bare or "
        f"under one of {', '.join(repr(k) for k in CONTAINER_KEYS)})."
    )


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def strip_wrapper_prefix(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], str | None]:
    """Remove a `WRAPPER_PREFIXES` prefix carried by every key (repeatedly: DDP of a compiled model)."""
    stripped: list[str] = []
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                stripped.append(prefix)
                changed = True
    return state, "".join(stripped) or None


def is_bn_counter(key: str) -> bool:
    """Whether ``key`` is a BatchNorm step counter (``...num_batches_tracked``)."""
    return key.rsplit(".", 1)[-1] == BN_COUNTER


def tensor_kind(key: str) -> str:
    """The last part of ``key``: ``weight``, ``bias``, ``running_mean``, ``running_var``, ..."""
    return key.rsplit(".", 1)[-1]
