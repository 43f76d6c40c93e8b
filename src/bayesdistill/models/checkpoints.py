"""Trained weights from a file into a zoo model: teachers people already have.

`load_weights(model, path)` reads a checkpoint without executing code from it
(``torch.load(..., weights_only=True)``, through `bayesdistill.io.load_torch`), takes the
state dict out of the usual containers and matches its tensors to the model's:

1. **Containers.** A bare state dict, or one under ``"model"`` (what RepDistiller and
   mdistiller save for their CIFAR-100 teachers: ``{"model": sd, "optimizer": ..., "epoch":
   ..., "best_acc": ...}``), ``"state_dict"``, ``"model_state_dict"``, ``"net"`` or
   ``"weights"`` (bayesdistill's own network files, `bayesdistill.runner.common.save_network`);
   the ``"module."`` prefix of ``nn.DataParallel``/DDP and ``"_orig_mod."`` of ``torch.compile``
   are removed.
2. **Names** (`KeyMapping.EXACT`): the file's keys are the model's.
3. **Position** (`KeyMapping.POSITIONAL`): the same network under other names, as the teacher
   checkpoints of the mdistiller/RepDistiller CIFAR-100 zoo (``conv1.weight``,
   ``layer1.0.bn1.running_mean``, ..., ``fc.weight`` where ours says ``body.0.0.weight``, ...,
   ``head.weight``). The tensors are paired in registration order (the order ``state_dict``
   lists them and ``torch.save`` keeps) when both hold the same number and every pair agrees in
   shape and in its kind (the last part of the name: ``weight``, ``bias``, ``running_mean``,
   ``running_var``). BatchNorm's ``num_batches_tracked`` counters are left out of the pairing
   (checkpoints written before PyTorch 0.4.1 have none; the model keeps its own then): they
   follow their layer's ``running_mean``.

   Shapes pin down a layout well but not completely: two same-shaped layers registered in the
   opposite order to their use would be swapped unnoticed. The layouts of mdistiller's and
   RepDistiller's ``resnet`` (resnet8 … resnet110, resnet8x4, resnet32x4), ``resnetv2``
   (ResNet18/34/50), ``wrn``, ``vgg`` (``vgg*_bn``), ``mobilenetv2`` (``mobile_half``),
   ``ShuffleNetv1`` and ``ShuffleNetv2`` register their layers in the order they use them, as
   the models of `bayesdistill.models.cifar` do (tests/models/test_checkpoints.py checks the
   shapes, key by key), and compute the same function as far as reading the code tells (their
   fixed-size final pooling is our global pooling at 32x32); their plain ``vgg*`` (no batch
   norm) is ``vgg`` with ``batch_norm: false`` here. Which pairing was used is logged and
   returned (`WeightsMatch`).

Anything else raises `CheckpointError` naming the missing and unexpected keys (a few of each,
with counts), the first shape mismatch, and the zoo architecture the file seems to hold when
one of the registry's named models has exactly its shapes.

Where a state dict sits in a file and what its keys say is `bayesdistill.models.state_dicts`;
the wording of a mismatch and the guess of the architecture,
`bayesdistill.models.checkpoint_diagnosis`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from bayesdistill.errors import CheckpointError
from bayesdistill.io import load_torch
from bayesdistill.models.base import Classifier
from bayesdistill.models.checkpoint_diagnosis import (
    SHOWN_KEYS,
    guess_architecture,
    mismatch_message,
    model_name,
    spec_origin,
)
from bayesdistill.models.state_dicts import (
    BN_COUNTER,
    CONTAINER_KEYS,
    is_bn_counter,
    strip_wrapper_prefix,
    tensor_kind,
    unwrap_state_dict,
)

log = logging.getLogger("bayesdistill")

UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL [\w.]+")
"""What torch names when ``weights_only`` meets a class it does not allow."""


class KeyMapping(str, Enum):
    """How a checkpoint's tensors were matched to the model's."""

    EXACT = "exact"
    """The file's key names are the model's."""
    POSITIONAL = "positional"
    """Other names, the same tensors in the same order with the same shapes (another code
    base's layout of the same architecture)."""


@dataclass(frozen=True)
class WeightsMatch:
    """What `load_weights` did: the pairing, where the state dict was and how it was renamed.

    Attributes:
        mapping: by name or by position.
        tensors: tensors loaded (``num_batches_tracked`` counters not counted).
        container: the key the state dict was found under (``None``: a bare state dict).
        stripped_prefix: the wrapper prefix removed from every key, if any.
        counters_kept: BatchNorm counters absent from the file, left at the model's value.
        renamed: for a positional match, the first pairs ``(file key, model key)``.
    """

    mapping: KeyMapping
    tensors: int
    container: str | None = None
    stripped_prefix: str | None = None
    counters_kept: int = 0
    renamed: tuple[tuple[str, str], ...] = ()

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (for run records)."""
        return {
            "key_mapping": self.mapping.value,
            "tensors": self.tensors,
            "container": self.container,
            "stripped_prefix": self.stripped_prefix,
            "counters_kept": self.counters_kept,
        }


def read_state_dict(
    path: str | os.PathLike[str],
) -> tuple[dict[str, Tensor], str | None, str | None, dict[str, Any] | None]:
    """``(state dict, container key, stripped prefix, bayesdistill spec)`` of a checkpoint file.

    Raises `FileNotFoundError` for a missing file and `CheckpointError` for an empty, corrupt
    or unsafe one (a pickled module: re-save its ``state_dict()``) or one without a state dict.
    """
    obj = _load(path)
    spec = obj.get("spec") if isinstance(obj, dict) and isinstance(obj.get("spec"), dict) else None
    state, container = unwrap_state_dict(obj, source=f"'{path}'")
    state, prefix = strip_wrapper_prefix(state)
    return state, container, prefix, spec


def _load(path: str | os.PathLike[str]) -> Any:
    try:
        return load_torch(path, what="network checkpoint")
    except CheckpointError as exc:
        cause = exc.__cause__
        if cause is None:  # a folder or an empty file: load_torch's message says it all
            raise
        found = UNSUPPORTED_GLOBAL.search(str(cause))
        if found:
            raise CheckpointError(
                f"'{path}' holds Python objects other than tensors and plain values "
                f"({found.group(0)}), e.g. a whole model saved with torch.save(model); "
                "bayesdistill does not unpickle them, as that could run code from the file. "
                "Re-save the weights alone, torch.save(model.state_dict(), path), where the "
                "model's code is available."
            ) from exc
        first_line = next(iter(str(cause).splitlines()), "").strip()[:200]
        raise CheckpointError(
            f"cannot read '{path}': the file is truncated, corrupt or not a PyTorch file "
            f"({type(cause).__name__}: {first_line}). Copy or download it again."
        ) from exc


def match_state_dict(
    model: nn.Module, state: Mapping[str, Tensor]
) -> tuple[dict[str, Tensor], KeyMapping, int, list[tuple[str, str]]]:
    """The file's tensors renamed to ``model``'s keys, complete, ready for a strict load.

    Returns ``(state dict in the model's names, mapping, counters kept, positional pairs)``.
    Raises `CheckpointError` when neither names nor positions match (see `mismatch_message`).
    """
    own = model.state_dict()
    if _names_match(own, state):
        full = {k: state.get(k, own[k]) for k in own}
        kept = sum(1 for k in own if k not in state)
        return full, KeyMapping.EXACT, kept, []
    pairs = _positional_pairs(own, state)
    if pairs is None:
        raise CheckpointError(mismatch_message(model, state))
    full = dict(own)
    for theirs, ours in pairs:
        full[ours] = state[theirs]
    # counters follow their layer, found through its running_mean
    module_map = {
        ours.rsplit(".", 1)[0]: theirs.rsplit(".", 1)[0]
        for theirs, ours in pairs
        if ours.endswith(".running_mean")
    }
    kept = 0
    for key in own:
        if is_bn_counter(key):
            source = f"{module_map.get(key.rsplit('.', 1)[0], '')}.{BN_COUNTER}"
            if source in state:
                full[key] = state[source]
            else:
                kept += 1
    return full, KeyMapping.POSITIONAL, kept, pairs


def _names_match(own: Mapping[str, Tensor], state: Mapping[str, Tensor]) -> bool:
    """Same keys (the file may lack every counter) and the same shapes."""
    missing = set(own) - set(state)
    if set(state) - set(own) or any(not is_bn_counter(k) for k in missing):
        return False
    return all(tuple(state[k].shape) == tuple(own[k].shape) for k in state)


def _positional_pairs(
    own: Mapping[str, Tensor], state: Mapping[str, Tensor]
) -> list[tuple[str, str]] | None:
    """``(file key, model key)`` pairs in registration order, or None if the layouts differ."""
    ours = [k for k in own if not is_bn_counter(k)]
    theirs = [k for k in state if not is_bn_counter(k)]
    if len(ours) != len(theirs):
        return None
    for a, b in zip(theirs, ours, strict=True):
        if tuple(state[a].shape) != tuple(own[b].shape) or tensor_kind(a) != tensor_kind(b):
            return None
    counters = [k for k in state if is_bn_counter(k)]
    batchnorms = {k.rsplit(".", 1)[0] for k in theirs if k.endswith(".running_mean")}
    if any(k.rsplit(".", 1)[0] not in batchnorms for k in counters):
        return None
    return list(zip(theirs, ours, strict=True))


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> WeightsMatch:
    """Load the weights in the file at ``path`` into ``model`` (in place) and say how.

    See the module docstring for the formats and the matching; tensors are copied into the
    model's parameters and buffers, keeping their device and dtype. Raises
    `FileNotFoundError` or `CheckpointError` (nothing is loaded then).
    """
    state, container, prefix, spec = read_state_dict(path)
    try:
        full, mapping, kept, pairs = match_state_dict(model, state)
    except CheckpointError as exc:
        origin = spec_origin(spec)
        raise CheckpointError(
            f"cannot load '{path}' into {model_name(model)}: {exc}{origin}"
        ) from None
    model.load_state_dict(full, strict=True)
    match = WeightsMatch(
        mapping=mapping,
        tensors=sum(1 for k in full if not is_bn_counter(k)),
        container=container,
        stripped_prefix=prefix,
        counters_kept=kept,
        renamed=tuple(pairs[:SHOWN_KEYS]) + ((pairs[-1],) if len(pairs) > SHOWN_KEYS else ()),
    )
    log.info("%s", describe_match(path, model, match))
    return match


def describe_match(path: str | os.PathLike[str], model: nn.Module, match: WeightsMatch) -> str:
    """One line saying which file went into which model, and how its keys were matched."""
    where = f" (under '{match.container}')" if match.container else ""
    prefix = f", prefix '{match.stripped_prefix}' removed" if match.stripped_prefix else ""
    counters = (
        f"; {match.counters_kept} BatchNorm counters absent from the file kept at the model's value"
        if match.counters_kept
        else ""
    )
    if match.mapping is KeyMapping.EXACT:
        how = "by name"
    else:
        shown = ", ".join(f"{a} → {b}" for a, b in match.renamed)
        how = f"by position (other key names, same shapes in the same order: {shown})"
    return (
        f"loaded {match.tensors} tensors of '{path}'{where} into {model_name(model)} "
        f"{how}{prefix}{counters}"
    )


def load_teacher_checkpoint(
    path: str | os.PathLike[str],
    model_config_name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    options: Mapping[str, Any] | None = None,
) -> Classifier:
    """A zoo model ``create_model(model_config_name, input_shape, num_classes, **options)``
    carrying the trained weights of the file at ``path``, in eval mode, on the CPU.

    The network's `ModelSpec` is the configured one, so it is saved and rebuilt like a
    network trained here. Raises `FileNotFoundError` or `CheckpointError`.
    """
    from bayesdistill.models import create_model  # the registry imports the zoo, not this module

    model = create_model(model_config_name, tuple(input_shape), num_classes, **dict(options or {}))
    load_weights(model, path)
    return model.eval()


def check_teacher_checkpoint(
    path: str | os.PathLike[str],
    model_config_name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    options: Mapping[str, Any] | None = None,
) -> WeightsMatch:
    """What `load_teacher_checkpoint` would do, without building real weights: the model is
    built on the meta device and nothing is loaded. For checks before a run starts; raises
    the same errors."""
    from bayesdistill.models import create_model

    with torch.device("meta"):
        model = create_model(
            model_config_name, tuple(input_shape), num_classes, **dict(options or {})
        )
    state, container, prefix, spec = read_state_dict(path)
    try:
        full, mapping, kept, _ = match_state_dict(model, state)
    except CheckpointError as exc:
        raise CheckpointError(
            f"cannot load '{path}' into {model_name(model)}: {exc}{spec_origin(spec)}"
        ) from None
    tensors = sum(1 for k in full if not is_bn_counter(k))
    return WeightsMatch(mapping, tensors, container, prefix, kept)


__all__ = [
    "CONTAINER_KEYS",
    "KeyMapping",
    "WeightsMatch",
    "check_teacher_checkpoint",
    "describe_match",
    "guess_architecture",
    "load_teacher_checkpoint",
    "load_weights",
    "match_state_dict",
    "mismatch_message",
    "read_state_dict",
    "strip_wrapper_prefix",
    "unwrap_state_dict",
]
