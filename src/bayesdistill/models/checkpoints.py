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

log = logging.getLogger("bayesdistill")

CONTAINER_KEYS = ("model", "state_dict", "model_state_dict", "net", "weights")
"""Keys under which checkpoints commonly keep the state dict, tried in this order."""
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""Prefixes added by ``nn.DataParallel``/DDP and by ``torch.compile``."""
BN_COUNTER = "num_batches_tracked"
SHOWN_KEYS = 4
"""Keys listed per category in an error message (the counts are always given)."""
REFERENCE_SIZE = 32
"""Image side used to build candidate architectures when the caller's input is not an image."""
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
        if _is_counter(key):
            source = f"{module_map.get(key.rsplit('.', 1)[0], '')}.{BN_COUNTER}"
            if source in state:
                full[key] = state[source]
            else:
                kept += 1
    return full, KeyMapping.POSITIONAL, kept, pairs


def _is_counter(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == BN_COUNTER


def _names_match(own: Mapping[str, Tensor], state: Mapping[str, Tensor]) -> bool:
    """Same keys (the file may lack every counter) and the same shapes."""
    missing = set(own) - set(state)
    if set(state) - set(own) or any(not _is_counter(k) for k in missing):
        return False
    return all(tuple(state[k].shape) == tuple(own[k].shape) for k in state)


def _positional_pairs(
    own: Mapping[str, Tensor], state: Mapping[str, Tensor]
) -> list[tuple[str, str]] | None:
    """``(file key, model key)`` pairs in registration order, or None if the layouts differ."""
    ours = [k for k in own if not _is_counter(k)]
    theirs = [k for k in state if not _is_counter(k)]
    if len(ours) != len(theirs):
        return None
    for a, b in zip(theirs, ours, strict=True):
        if tuple(state[a].shape) != tuple(own[b].shape) or _leaf(a) != _leaf(b):
            return None
    counters = [k for k in state if _is_counter(k)]
    batchnorms = {k.rsplit(".", 1)[0] for k in theirs if k.endswith(".running_mean")}
    if any(k.rsplit(".", 1)[0] not in batchnorms for k in counters):
        return None
    return list(zip(theirs, ours, strict=True))


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


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
        origin = _spec_origin(spec)
        raise CheckpointError(
            f"cannot load '{path}' into {_model_name(model)}: {exc}{origin}"
        ) from None
    model.load_state_dict(full, strict=True)
    match = WeightsMatch(
        mapping=mapping,
        tensors=sum(1 for k in full if not _is_counter(k)),
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
        f"loaded {match.tensors} tensors of '{path}'{where} into {_model_name(model)} "
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
            f"cannot load '{path}' into {_model_name(model)}: {exc}{_spec_origin(spec)}"
        ) from None
    tensors = sum(1 for k in full if not _is_counter(k))
    return WeightsMatch(mapping, tensors, container, prefix, kept)


# ---- telling the user what the file holds --------------------------------------------------


def mismatch_message(model: nn.Module, state: Mapping[str, Tensor]) -> str:
    """Missing and unexpected keys (a few, with counts), the first shape mismatch, a guess."""
    own = model.state_dict()
    counters_absent = not any(_is_counter(k) for k in state)
    missing = [k for k in own if k not in state and not (counters_absent and _is_counter(k))]
    unexpected = [k for k in state if k not in own]
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {_few(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_few(unexpected)}")
    shape = _first_shape_mismatch(own, state)
    if shape:
        parts.append(shape)
    n_own = sum(1 for k in own if not _is_counter(k))
    n_file = sum(1 for k in state if not _is_counter(k))
    parts.append(
        f"the file holds {n_file} tensors, the model {n_own} (BatchNorm counters not counted), "
        "and they do not pair up by position (same shapes in the same order) either"
    )
    guess = guess_architecture(state, _image_shape(model))
    if guess:
        parts.append(f"the file seems to hold {guess}")
    return "; ".join(parts) + "."


def _few(keys: list[str]) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:SHOWN_KEYS])
    return shown + (", ..." if len(keys) > SHOWN_KEYS else "")


def _first_shape_mismatch(own: Mapping[str, Tensor], state: Mapping[str, Tensor]) -> str | None:
    for key, value in state.items():  # by name where names are shared
        if key in own and tuple(value.shape) != tuple(own[key].shape):
            return (
                f"first shape mismatch: '{key}' is {tuple(value.shape)} in the file, "
                f"{tuple(own[key].shape)} in the model"
            )
    if any(k in own for k in state if not _is_counter(k)):
        return None
    ours = [k for k in own if not _is_counter(k)]
    theirs = [k for k in state if not _is_counter(k)]
    for i, (a, b) in enumerate(zip(theirs, ours, strict=False)):  # no shared names: by position
        if tuple(state[a].shape) != tuple(own[b].shape) or _leaf(a) != _leaf(b):
            return (
                f"first mismatch by position: tensor #{i} is '{a}' {tuple(state[a].shape)} in "
                f"the file, '{b}' {tuple(own[b].shape)} in the model"
            )
    return None


def _image_shape(model: nn.Module) -> tuple[int, ...] | None:
    spec = getattr(model, "spec", None)
    return tuple(spec.input_shape) if spec is not None else None


def _model_name(model: nn.Module) -> str:
    spec = getattr(model, "spec", None)
    if spec is None:
        return type(model).__name__
    options = f" {dict(spec.options)}" if spec.options else ""
    return f"'{spec.name}'{options} for {spec.num_classes} classes"


def _spec_origin(spec: dict[str, Any] | None) -> str:
    if not spec or "name" not in spec:
        return ""
    options = f" {spec.get('options')}" if spec.get("options") else ""
    return (
        f" The file is a bayesdistill network '{spec['name']}'{options} for "
        f"{spec.get('num_classes')} classes, input shape {tuple(spec.get('input_shape', ()))}."
    )


CANDIDATE_VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("wrn", {"depth": 16, "widen_factor": 1}),
    ("vgg", {"depth": 11}),
    ("vgg", {"depth": 16}),
    ("vgg", {"depth": 19}),
    ("vgg", {"depth": 8, "batch_norm": False}),
    ("vgg", {"depth": 13, "batch_norm": False}),
    ("resnet", {"depth": 101}),
    ("resnet", {"depth": 152}),
)
"""Architectures of the KD zoos that the registry has under a generic name only."""
GENERIC_MODELS = frozenset({"cifar_resnet", "resnet", "wrn", "vgg"})


def guess_architecture(
    state: Mapping[str, Tensor], input_shape: tuple[int, ...] | None = None
) -> str | None:
    """The zoo model whose tensors have exactly the file's shapes in order, described, or None.

    Candidates are the registry's named CIFAR models and `CANDIDATE_VARIANTS`, built on the
    meta device (no memory, no compute) for the file's class count and input channels.
    """
    from bayesdistill.models import MODELS, create_model
    from bayesdistill.models.cifar import ZOO

    shapes = [tuple(v.shape) for k, v in state.items() if not _is_counter(k)]
    matrices = [s for s in shapes if len(s) == 2]
    kernels = [s for s in shapes if len(s) == 4]
    if not matrices or not kernels:
        return None
    num_classes, channels = matrices[-1][0], kernels[0][1]
    side = input_shape[1:] if input_shape is not None and len(input_shape) == 3 else None
    image = (channels, *(side or (REFERENCE_SIZE, REFERENCE_SIZE)))
    candidates = [(name, {}) for name in ZOO if name not in GENERIC_MODELS]
    candidates += [c for c in CANDIDATE_VARIANTS if c[0] in MODELS]
    for name, options in candidates:
        try:
            with torch.device("meta"):
                candidate = create_model(name, image, num_classes, **options)
        except (ValueError, TypeError):  # a candidate that cannot take this input: no match
            continue
        theirs = [tuple(v.shape) for k, v in candidate.state_dict().items() if not _is_counter(k)]
        if theirs == shapes:
            described = f"'{name}'" + (f" {options}" if options else "")
            return f"a {described} for {num_classes} classes and {channels} input channels"
    return None


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
