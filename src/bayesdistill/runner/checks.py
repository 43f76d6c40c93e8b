"""Checks made before a run folder is created, so that a run that cannot start leaves nothing.

A saved teacher fits the data it will teach on (a teacher file trained on other data fails
deep inside training otherwise: ``mat1 and mat2 shapes cannot be multiplied``; here it
fails first, naming the teacher's input shape and class count and the data's); the
configured networks accept the data's inputs (built and run on the meta device: no memory,
no compute); a teacher checkpoint fits the teacher network; every seed's student subset
exists.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bayesdistill.config.schema import NO_TEACHER, ExperimentConfig, ModelConfig
from bayesdistill.data import DataSplits
from bayesdistill.errors import BayesDistillError, ConfigError, DataError
from bayesdistill.losses import loss_kind
from bayesdistill.models import ModelSpec, create_model
from bayesdistill.models.checkpoints import check_teacher_checkpoint
from bayesdistill.runner.targets import student_indices
from bayesdistill.teachers import (
    Teacher,
    check_teacher_matches,
    learns_from_data,
    needs_network,
    walk,
)
from bayesdistill.teachers.mc_dropout import checked_dropout_layers

PROBE_EXAMPLES = 2
"""Training examples the teacher is asked about to check that it accepts the data's inputs."""


def teacher_input_shapes(teacher: Teacher) -> set[tuple[int, ...]]:
    """The input shapes of the networks inside ``teacher`` (from their `ModelSpec`): the
    ``network`` of every teacher it is made of (`walk`: an ensemble's members, a tempered
    teacher's base, a cross-fitted teacher's fold teachers, at any depth); empty when it
    holds no bayesdistill network (an exact-posterior teacher)."""
    shapes: set[tuple[int, ...]] = set()
    for part in walk(teacher):
        spec = getattr(getattr(part, "network", None), "spec", None)
        if isinstance(spec, ModelSpec):
            shapes.add(tuple(spec.input_shape))
    return shapes


def check_teacher_fits(
    teacher: Teacher, splits: DataSplits, *, classes: bool = True, where: str = ""
) -> None:
    """Raise `DataError` when ``teacher`` cannot teach on ``splits``: other input shape
    (read from its networks, then checked by asking it about `PROBE_EXAMPLES` training
    inputs) or, with ``classes``, another class count. ``where`` names the teacher.

    The probe runs under ``torch.random.fork_rng``: it changes no random state.
    """
    name = f"the teacher{f' {where}' if where else ''}"
    data_shape = tuple(splits.input_shape)
    shapes = teacher_input_shapes(teacher)
    if shapes and shapes != {data_shape}:
        found = " and ".join(str(list(s)) for s in sorted(shapes))
        raise DataError(
            f"{name} takes inputs of shape {found}, but the data's inputs ('{splits.name}') "
            f"have shape {list(data_shape)}; distil with a teacher trained on this dataset "
            "(or make the data match the teacher's)"
        )
    if classes:
        check_teacher_matches(teacher, splits.num_classes, "training data")
    x = _first_inputs(splits)
    device = getattr(teacher, "device", torch.device("cpu"))
    devices = [device] if isinstance(device, torch.device) and device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            probs = teacher.predict_proba(x)
    except RuntimeError as exc:  # a shape error inside the teacher's network
        first = next(iter(str(exc).splitlines()), "")
        raise DataError(
            f"{name} cannot take the data's inputs of shape {list(data_shape)} "
            f"('{splits.name}'): {first}; distil with a teacher trained on this dataset"
        ) from exc
    if classes and tuple(probs.shape) != (len(x), splits.num_classes):
        raise DataError(
            f"{name} answers with probabilities of shape {list(probs.shape)} for "
            f"{len(x)} inputs; expected {[len(x), splits.num_classes]}"
        )


def _first_inputs(splits: DataSplits) -> torch.Tensor:
    """The first training inputs, standardised as training batches are."""
    train = splits.train
    count = min(PROBE_EXAMPLES, len(train))
    x = getattr(train, "x", None)
    if isinstance(x, torch.Tensor):
        return x[:count]
    raw = torch.stack([torch.as_tensor(train.dataset[i][0]) for i in range(count)]).float()
    standardizer = getattr(train, "standardizer", None)
    return raw if standardizer is None else standardizer(raw)


def check_network_fits(model: ModelConfig, splits: DataSplits, where: str) -> None:
    """Build the ``where`` network (``teacher.model``, ``student.model``) for the data and
    run it on `PROBE_EXAMPLES` inputs, all on the meta device; a network that cannot take
    the data's inputs is a `ConfigError` naming the model and the shape."""
    shape = tuple(splits.input_shape)
    try:
        with torch.device("meta"):
            network = create_model(model.name, shape, splits.num_classes, **model.options)
            network.eval()(torch.empty(PROBE_EXAMPLES, *shape))
    except BayesDistillError as exc:
        raise ConfigError(f"{where} '{model.name}': {exc}") from None
    except (RuntimeError, ValueError) as exc:
        first = next(iter(str(exc).splitlines()), "")
        raise ConfigError(
            f"{where} '{model.name}' cannot take the data's inputs of shape {list(shape)} "
            f"('{splits.name}'): {first}"
        ) from None


def check_experiment(
    config: ExperimentConfig,
    splits: DataSplits,
    *,
    teacher: bool,
    seeds: Sequence[int] | None = None,
) -> None:
    """What a study or teacher run (``teacher=True``) and a distill run need of the data:
    the teacher network (when a teacher kind builds one from ``teacher.model``, and its
    checkpoint file) and the student network accept the data's inputs, and the student subset of every seed (default: the config's) can be
    drawn."""
    kinds = [k for k in config.teachers if k.name != NO_TEACHER]
    builds_networks = any(
        needs_network(k.name, k.options) or learns_from_data(k.name, k.options) for k in kinds
    )
    if teacher and (builds_networks or config.teacher.checkpoint is not None):
        check_network_fits(config.teacher.model, splits, "teacher.model")
        if config.teacher.checkpoint is not None:
            check_teacher_checkpoint(
                config.teacher.checkpoint,
                config.teacher.model.name,
                tuple(splits.input_shape),
                splits.num_classes,
                config.teacher.model.options,
            )
    check_network_fits(config.student.model, splits, "student.model")
    if teacher:
        check_dropout_teachers(config, splits)
    check_feature_terms(config, splits)
    for seed in config.seeds if seeds is None else seeds:
        student_indices(config.student, splits, seed)


def check_dropout_teachers(config: ExperimentConfig, splits: DataSplits) -> None:
    """An MC-dropout teacher kind (also as ensemble members) needs a teacher network with
    dropout layers: a `ConfigError` naming the kind otherwise, before anything runs."""
    for kind in config.teachers:
        member = kind.options.get("member_kind") if kind.name == "ensemble" else None
        if "mc_dropout" not in (kind.name, member):
            continue
        model = config.teacher.model
        with torch.device("meta"):
            network = create_model(
                model.name, tuple(splits.input_shape), splits.num_classes, **model.options
            )
        try:
            checked_dropout_layers(network)
        except ConfigError as exc:
            raise ConfigError(
                f"teacher '{kind.key}' (teacher.model '{model.name}'): {exc}"
            ) from None


NO_SINGLE_NETWORK = frozenset({"ensemble", "exact_bcp", "noisy_bcp"})
"""Teacher kinds without one network whose penultimate features could stand for theirs
(`bayesdistill.train.features.feature_network` refuses them; so are cross-fitted kinds)."""


def check_feature_terms(config: ExperimentConfig, splits: DataSplits) -> None:
    """Student losses with feature terms (KD²M's distances) need, for every teacher kind they
    apply to, a teacher with one network and penultimate features of the student's
    dimension: a `ConfigError` naming the loss, the kind, or both dimensions otherwise."""
    featured = [
        loss
        for loss in config.student.losses
        if loss.terms is not None and any(loss_kind(t.name) == "feature" for t in loss.terms)
    ]
    if not featured:
        return
    for loss in featured:
        for kind in config.teachers:
            if kind.name == NO_TEACHER or not loss.applies_to(kind.key):
                continue
            if kind.name in NO_SINGLE_NETWORK or kind.cross_fit is not None:
                what = "cross-fitted (K networks)" if kind.cross_fit else f"of kind '{kind.name}'"
                raise ConfigError(
                    f"student loss '{loss.key}' has feature terms, which compare the student's "
                    f"penultimate features with the teacher's, but teacher '{kind.key}' is "
                    f"{what} and has no single network to take them from; restrict the loss "
                    f"to other teachers (teachers: [...]) or drop its feature terms"
                )
    dims = {
        where: _feature_dim(model, splits)
        for where, model in (("student", config.student.model), ("teacher", config.teacher.model))
    }
    if None not in dims.values() and dims["student"] != dims["teacher"]:
        raise ConfigError(
            f"student loss '{featured[0].key}' has feature terms, which compare penultimate "
            f"features, but the student '{config.student.model.name}' has D = "
            f"{dims['student']} and the teacher '{config.teacher.model.name}' D = "
            f"{dims['teacher']}; choose networks with equal feature dimensions (KD²M: "
            "ResNet34 → ResNet18, both 512-d)"
        )


def _feature_dim(model: ModelConfig, splits: DataSplits) -> int | None:
    """The penultimate feature dimension of ``model`` on the data (built on meta)."""
    with torch.device("meta"):
        network = create_model(
            model.name, tuple(splits.input_shape), splits.num_classes, **model.options
        )
    return getattr(getattr(network, "head", None), "in_features", None)
