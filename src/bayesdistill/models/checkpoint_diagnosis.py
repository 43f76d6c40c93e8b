"""What a checkpoint that does not fit a model holds, in words for its error message.

`mismatch_message` lists the missing and unexpected keys (a few of each, with counts) and the
first shape mismatch, by name or by position; `guess_architecture` names the zoo model whose
tensors have exactly the file's shapes, when one of the registry's models does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from bayesdistill.models.state_dicts import is_bn_counter, tensor_kind

SHOWN_KEYS = 4
"""Keys listed per category in an error message (the counts are always given)."""
REFERENCE_SIZE = 32
"""Image side used to build candidate architectures when the caller's input is not an image."""


def mismatch_message(model: nn.Module, state: Mapping[str, Tensor]) -> str:
    """Missing and unexpected keys (a few, with counts), the first shape mismatch, a guess."""
    own = model.state_dict()
    counters_absent = not any(is_bn_counter(k) for k in state)
    missing = [k for k in own if k not in state and not (counters_absent and is_bn_counter(k))]
    unexpected = [k for k in state if k not in own]
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {_few(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_few(unexpected)}")
    shape = _first_shape_mismatch(own, state)
    if shape:
        parts.append(shape)
    n_own = sum(1 for k in own if not is_bn_counter(k))
    n_file = sum(1 for k in state if not is_bn_counter(k))
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
    if any(k in own for k in state if not is_bn_counter(k)):
        return None
    ours = [k for k in own if not is_bn_counter(k)]
    theirs = [k for k in state if not is_bn_counter(k)]
    for i, (a, b) in enumerate(zip(theirs, ours, strict=False)):  # no shared names: by position
        if tuple(state[a].shape) != tuple(own[b].shape) or tensor_kind(a) != tensor_kind(b):
            return (
                f"first mismatch by position: tensor #{i} is '{a}' {tuple(state[a].shape)} in "
                f"the file, '{b}' {tuple(own[b].shape)} in the model"
            )
    return None


def _image_shape(model: nn.Module) -> tuple[int, ...] | None:
    spec = getattr(model, "spec", None)
    return tuple(spec.input_shape) if spec is not None else None


def model_name(model: nn.Module) -> str:
    """The model's registry name, options and class count (its class name without a spec)."""
    spec = getattr(model, "spec", None)
    if spec is None:
        return type(model).__name__
    options = f" {dict(spec.options)}" if spec.options else ""
    return f"'{spec.name}'{options} for {spec.num_classes} classes"


def spec_origin(spec: dict[str, Any] | None) -> str:
    """A sentence naming the bayesdistill network a file holds (empty for other files)."""
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

    shapes = [tuple(v.shape) for k, v in state.items() if not is_bn_counter(k)]
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
        theirs = [tuple(v.shape) for k, v in candidate.state_dict().items() if not is_bn_counter(k)]
        if theirs == shapes:
            described = f"'{name}'" + (f" {options}" if options else "")
            return f"a {described} for {num_classes} classes and {channels} input channels"
    return None
