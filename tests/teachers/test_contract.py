"""Every registered teacher kind: valid probabilities, a fixed function of x, save/reload."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bayesdistill.errors import CheckpointError, DataError
from bayesdistill.losses import onehot_ce
from bayesdistill.models import create_model
from bayesdistill.seeding import seeded
from bayesdistill.teachers import (
    TEACHERS,
    SavableTeacher,
    TeacherContext,
    check_teacher_matches,
    kinds_tagged,
    learns_from_data,
    load_teacher,
    needs_network,
    saved_kinds,
)
from bayesdistill.train import RunOptions, TrainSettings, fit, predict_in_batches

FAST_OPTIONS = {
    "laplace": {"grid_points": 5},
    "ivon": {"epochs": 2, "num_samples": 3},
    "mc_dropout": {"num_samples": 4},
    "ensemble": {"members": 2, "member_kind": "mc_dropout", "member_options": {"num_samples": 3}},
    "mfvi": {"epochs": 2, "num_samples": 3, "estimator": "flipout"},
    "mse_teacher": {"epochs": 2},
    "mcmi": {"epochs": 1},
}
SEEDED_KINDS = ["ensemble", "ivon", "mc_dropout", "mcmi", "mfvi", "mse_teacher"]
"""Kinds that draw random numbers (training or sampling): the seed must fix them."""


def make_dropout_mlp(splits, seed: int = 0):
    with seeded(seed):
        return create_model(
            "mlp", splits.input_shape, splits.num_classes, hidden=(16,), dropout=0.2
        )


@pytest.fixture(scope="module")
def context(tiny_splits):
    """The study's context, with a teacher network trained with dropout (for MC dropout)."""
    network = fit(
        make_dropout_mlp(tiny_splits),
        tiny_splits.train,
        loss_fn=onehot_ce,
        settings=TrainSettings(epochs=5, batch_size=32, lr=0.1),
        seed=0,
        progress=False,
    ).model
    return TeacherContext(
        splits=tiny_splits,
        seed=0,
        network=network,
        init_network=lambda: make_dropout_mlp(tiny_splits),
        train_settings=TrainSettings(epochs=2, batch_size=32, lr=0.1),
        run=RunOptions(progress=False),
    )


@pytest.fixture(scope="module")
def built_teachers(context):
    return {name: TEACHERS.build(name, context, **FAST_OPTIONS.get(name, {})) for name in TEACHERS}


@pytest.mark.parametrize("name", TEACHERS.names())
def test_teacher_returns_valid_probabilities(name, built_teachers, tiny_splits):
    teacher = built_teachers[name]
    probs = teacher.predict_proba(tiny_splits.test.x)
    assert probs.shape == (len(tiny_splits.test), tiny_splits.num_classes)
    assert probs.dtype == torch.float32 and not probs.requires_grad
    assert (probs >= 0).all() and torch.isfinite(probs).all()
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-5)
    assert teacher.num_classes == tiny_splits.num_classes


@pytest.mark.parametrize("name", TEACHERS.names())
def test_teacher_is_a_fixed_function_of_x(name, built_teachers, tiny_splits):
    teacher = built_teachers[name]
    x = tiny_splits.test.x
    whole = teacher.predict_proba(x)
    assert torch.allclose(teacher.predict_proba(x), whole, atol=1e-6)
    chunked = predict_in_batches(teacher, x, batch_size=7)
    assert torch.allclose(chunked, whole, atol=1e-6)
    reversed_order = teacher.predict_proba(x.flip(0)).flip(0)
    assert torch.allclose(reversed_order, whole, atol=1e-6)


@pytest.mark.parametrize("name", TEACHERS.names())
def test_save_and_reload_gives_the_same_probabilities(name, built_teachers, tiny_splits, tmp_path):
    teacher = built_teachers[name]
    path = tmp_path / f"{name}.pt"
    teacher.save(path)
    reloaded = load_teacher(path)
    assert type(reloaded) is type(teacher)
    x = tiny_splits.test.x
    assert torch.allclose(reloaded.predict_proba(x), teacher.predict_proba(x), atol=1e-6)
    assert reloaded.describe() == teacher.describe()


def test_truncated_teacher_file_is_a_clear_error(built_teachers, tmp_path):
    path = tmp_path / "teacher.pt"
    built_teachers["deterministic"].save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_teacher(path)


def test_foreign_file_is_rejected(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="expected format 'bayesdistill.teacher'"):
        load_teacher(path)
    with pytest.raises(FileNotFoundError, match="teacher file not found"):
        load_teacher(tmp_path / "missing.pt")


def test_class_count_mismatch(built_teachers):
    with pytest.raises(DataError, match="predicts 3 classes but the training data has 10"):
        check_teacher_matches(built_teachers["deterministic"], 10, "training data")


@pytest.mark.parametrize("name", SEEDED_KINDS)
def test_the_same_seed_builds_the_same_teacher(name, built_teachers, context, tiny_splits):
    again = TEACHERS.build(name, replace(context), **FAST_OPTIONS.get(name, {}))
    x = tiny_splits.test.x
    assert torch.allclose(again.predict_proba(x), built_teachers[name].predict_proba(x), atol=1e-6)


@pytest.mark.parametrize("name", ["mc_dropout", "mfvi", "ensemble"])
def test_another_seed_gives_other_samples(name, built_teachers, context, tiny_splits):
    other = TEACHERS.build(name, replace(context, seed=1), **FAST_OPTIONS.get(name, {}))
    x = tiny_splits.test.x
    assert not torch.allclose(other.predict_proba(x), built_teachers[name].predict_proba(x))


def test_every_sampling_kind_has_a_sample_count_option():
    sample_options = {"num_samples", "n_samples"}
    for name in ["ivon", "laplace", "mc_dropout", "mfvi"]:
        assert sample_options & {o.name for o in TEACHERS.entry(name).options}, name


# --- one registry: every kind's class, builder and tags in one entry ---------------------

TAG_CASES = [(name, FAST_OPTIONS.get(name, {})) for name in TEACHERS.names()] + [
    ("mfvi", {**FAST_OPTIONS["mfvi"], "init": "scratch"}),
    ("ensemble", {"members": 2, "member_kind": "ivon", "member_options": FAST_OPTIONS["ivon"]}),
    ("ensemble", {"members": 2, "member_kind": "exact_bcp"}),
]
"""Every entry, and the option values on which a tag's answer depends."""


def _concrete_teacher_classes():
    """Every SavableTeacher subclass bayesdistill defines that names a ``kind``."""
    found, todo = set(), [SavableTeacher]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "kind" in cls.__dict__ and cls.__module__.startswith("bayesdistill."):
            found.add(cls)
    return found


@pytest.mark.parametrize("name", TEACHERS.names())
def test_every_entry_names_its_class_and_tags(name):
    entry = TEACHERS.entry(name)
    assert {"saves", "needs_network", "learns_from_data", "bayesian"} <= set(entry.tags), name
    saves = entry.tags["saves"]
    assert issubclass(saves, SavableTeacher) and saves.kind == name
    # the class, its builder and its tags live in one module
    assert saves.__module__ == entry.obj.__module__


def test_every_saved_kind_is_found_through_the_registry():
    """No class is registered twice: the classes that files may name are the registry's
    entries plus the two wrappers, and that covers every teacher class there is."""
    kinds = saved_kinds()
    assert set(kinds) == set(TEACHERS.names()) | {"tempered", "cross_fitted"}
    assert set(kinds.values()) == _concrete_teacher_classes()
    assert not hasattr(SavableTeacher, "_TYPES")


def test_an_unregistered_kind_is_a_clear_error(tmp_path):
    class Unregistered(SavableTeacher):
        kind = "unregistered"
        num_classes = 2

        def payload(self):
            return {}

    Unregistered().save(tmp_path / "t.pt")
    with pytest.raises(
        CheckpointError, match="unknown kind 'unregistered'; known kinds: .*laplace"
    ):
        load_teacher(tmp_path / "t.pt")


class _NetworkSpy:
    """Stands in for the trained network: counts the builder's requests for it."""

    def __init__(self, network):
        self.network, self.calls = network, 0

    def __call__(self):
        self.calls += 1
        return self.network


@pytest.mark.parametrize(("name", "options"), TAG_CASES)
def test_the_needs_network_tag_is_true(name, options, context, tiny_splits):
    """A kind tagged needs_network=False builds without ever asking for the trained network
    (so a study need not train one); one tagged True asks for it."""
    spy = _NetworkSpy(context.network)
    spied = replace(context, network=None, train_network=spy)
    teacher = TEACHERS.build(name, spied, **options)
    assert teacher.predict_proba(tiny_splits.test.x).shape[1] == tiny_splits.num_classes
    assert (spy.calls > 0) == needs_network(name, options), (name, options, spy.calls)


@pytest.mark.parametrize("name", [n for n in TEACHERS.names() if not learns_from_data(n)])
def test_a_kind_that_learns_nothing_ignores_the_training_set(name, context, tiny_splits):
    x = tiny_splits.test.x
    full = TEACHERS.build(name, context, **FAST_OPTIONS.get(name, {}))
    fewer = context.splits.with_train(context.splits.train.subset(torch.arange(10)))
    part = TEACHERS.build(name, replace(context, splits=fewer), **FAST_OPTIONS.get(name, {}))
    assert torch.equal(part.predict_proba(x), full.predict_proba(x))


def test_tags_that_depend_on_options():
    assert needs_network("mfvi") and not needs_network("mfvi", {"init": "scratch"})
    assert not needs_network("ivon") and not needs_network("mse_teacher")
    assert needs_network("ensemble") and not needs_network("ensemble", {"member_kind": "ivon"})
    assert learns_from_data("ivon") and not learns_from_data("exact_bcp")
    assert not learns_from_data("ensemble", {"member_kind": "noisy_bcp"})
    assert kinds_tagged("bayesian") == ["ensemble", "ivon", "laplace", "mc_dropout", "mfvi"]
    assert "exact_bcp" not in kinds_tagged("learns_from_data")
