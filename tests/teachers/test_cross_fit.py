"""Cross-fitted teachers: folds, out-of-fold bookkeeping, a memorising teacher, every kind."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor

from bayesdistill.errors import ConfigError
from bayesdistill.models import create_model
from bayesdistill.seeding import seeded
from bayesdistill.teachers import (
    TEACHERS,
    CrossFitPlan,
    CrossFittedTeacher,
    SavableTeacher,
    TeacherContext,
    calibrate,
    cross_fit,
    load_teacher,
    stratified_folds,
    training_targets,
)
from bayesdistill.teachers.cross_fit import target_source
from bayesdistill.train import RunOptions, TrainSettings, predict_in_batches
from tests.teachers.test_contract import FAST_OPTIONS


class LookupTeacher(SavableTeacher):
    """Memorises exactly: one-hot label on an input it was trained on, uniform elsewhere."""

    kind: ClassVar[str] = "test_lookup"

    def __init__(self, x: Tensor, y: Tensor, num_classes: int) -> None:
        self.x, self.y, self.num_classes = x, y, num_classes

    def _predict(self, x: Tensor) -> Tensor:
        same = (x[:, None, :] == self.x[None, :, :]).all(-1)  # (B, N_seen)
        seen = same.any(1)
        out = torch.full((len(x), self.num_classes), 1.0 / self.num_classes)
        hit = self.y[same.float().argmax(1)]
        out[seen] = torch.nn.functional.one_hot(hit[seen], self.num_classes).float()
        return out

    def payload(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "num_classes": self.num_classes}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> LookupTeacher:
        return cls(payload["x"], payload["y"], payload["num_classes"])


def build_lookup(context: TeacherContext) -> LookupTeacher:
    train = context.splits.train
    return LookupTeacher(train.x.clone(), train.y.clone(), train.num_classes)


@pytest.fixture
def lookup_kind(monkeypatch):
    """The lookup teacher registered as kind 'test_lookup' for one test: a saved teacher
    reloads through its kind's registry entry (tag ``saves``), as a user's own kind would."""
    monkeypatch.setattr(TEACHERS, "_entries", dict(TEACHERS._entries))
    TEACHERS.register(
        "test_lookup", saves=LookupTeacher, needs_network=False, learns_from_data=True
    )(build_lookup)


def make_mlp(splits, seed: int = 0):
    with seeded(seed):
        return create_model(
            "mlp", splits.input_shape, splits.num_classes, hidden=(16,), dropout=0.2
        )


@pytest.fixture
def context(tiny_splits):
    return TeacherContext(
        splits=tiny_splits,
        seed=0,
        init_network=lambda: make_mlp(tiny_splits),
        train_settings=TrainSettings(epochs=2, batch_size=32, lr=0.1),
        run=RunOptions(progress=False),
    )


def test_one_fold_and_non_integers_are_refused(context, tiny_splits):
    with pytest.raises(ConfigError, match=r"K >= 2 folds.*got K = 1"):
        cross_fit("deterministic", context, folds=1)
    with pytest.raises(ConfigError, match=r"K = 1"):
        stratified_folds(tiny_splits.train.y, 1, seed=0)
    for bad in (True, 2.0, "3"):
        with pytest.raises(ConfigError, match="integer number of folds"):
            stratified_folds(tiny_splits.train.y, bad, seed=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cannot split 4 training examples into K = 5"):
        stratified_folds(torch.tensor([0, 1, 0, 1]), 5, seed=0)


def test_a_kind_that_learns_nothing_is_refused(context):
    with pytest.raises(ConfigError, match="learns nothing from the training set"):
        cross_fit("exact_bcp", context, folds=2)


@pytest.mark.parametrize("folds", [2, 3, 5])
def test_folds_are_stratified_and_balanced(folds):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([17, 10, 4, 23])])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(3))]
    fold_of = stratified_folds(labels, folds, seed=0)
    assert fold_of.shape == labels.shape and set(fold_of.tolist()) == set(range(folds))
    for c in range(4):
        counts = torch.bincount(fold_of[labels == c], minlength=folds)
        assert int(counts.max() - counts.min()) <= 1, (c, counts)
    sizes = torch.bincount(fold_of, minlength=folds)
    assert int(sizes.max() - sizes.min()) <= 1


def test_folds_are_seeded():
    labels = torch.arange(200) % 3
    first = stratified_folds(labels, 5, seed=7)
    assert torch.equal(first, stratified_folds(labels, 5, seed=7))
    assert not torch.equal(first, stratified_folds(labels, 5, seed=8))
    gen = torch.Generator().manual_seed(1)
    assert not torch.equal(stratified_folds(labels, 5, gen), stratified_folds(labels, 5, gen))


def test_each_target_comes_from_the_teacher_that_did_not_see_it(context, tiny_splits):
    """Fold bookkeeping: teacher k is trained on exactly the other folds, and example i's
    out-of-fold row is teacher fold(i)'s prediction."""
    train = tiny_splits.train
    position = {tuple(row.tolist()): i for i, row in enumerate(train.x)}
    assert len(position) == len(train)  # rows are distinct: positions are recoverable
    seen: list[set[int]] = []
    num_classes = tiny_splits.num_classes

    def recording(ctx: TeacherContext) -> LookupTeacher:
        fold = len(seen)
        seen.append({position[tuple(row.tolist())] for row in ctx.splits.train.x})
        # a signature per fold: predicts class (fold mod C) with probability 1/2
        teacher = LookupTeacher(ctx.splits.train.x[:0], ctx.splits.train.y[:0], num_classes)
        signature = torch.full((num_classes,), 0.5 / (num_classes - 1))
        signature[fold % num_classes] = 0.5
        teacher._predict = lambda x, s=signature: s.expand(len(x), -1).clone()  # type: ignore[method-assign]
        return teacher

    plan = CrossFitPlan.make(context, 3)
    teacher = plan.build(recording)
    assert len(seen) == 3
    for k in range(3):
        assert seen[k] == set(plan.train_index(k).tolist())
        assert seen[k].isdisjoint(plan.held_out_index(k).tolist())
        assert len(seen[k]) + len(plan.held_out_index(k)) == len(train)
    oof = teacher.out_of_fold()
    for i in range(len(train)):
        k = int(teacher.fold_of[i])
        assert i not in seen[k]
        assert int(oof[i].argmax()) == k % num_classes and float(oof[i].max()) == 0.5


def test_a_memorising_teacher_gives_uniform_out_of_fold_targets(context, tiny_splits):
    """A lookup teacher is one-hot on what it saw: every out-of-fold row must be uniform,
    and the mean of the K teachers on a training point is ((K−1)/K)·one-hot + (1/K)·uniform."""
    train, c, k = tiny_splits.train, tiny_splits.num_classes, 4
    teacher = cross_fit(build_lookup, context, folds=k)
    assert isinstance(teacher, CrossFittedTeacher)
    targets = training_targets(teacher, train)
    assert torch.allclose(targets, torch.full_like(targets, 1.0 / c))
    assert target_source(teacher, train) == "out_of_fold"
    mean = teacher.predict_proba(train.x)
    expected = (k - 1) / k * torch.nn.functional.one_hot(train.y, c) + 1.0 / (k * c)
    assert torch.allclose(mean, expected.float(), atol=1e-6)
    # in-sample, the same teacher is exactly one-hot: the failure cross-fitting removes
    in_sample = build_lookup(context).predict_proba(train.x)
    assert torch.equal(in_sample.argmax(1), train.y) and torch.all(in_sample.max(1).values == 1)
    # elsewhere (data it was not fitted on) the teacher answers with its predictions
    assert target_source(teacher, tiny_splits.test) == "predictions"
    assert torch.allclose(
        training_targets(teacher, tiny_splits.test), teacher.predict_proba(tiny_splits.test.x)
    )


def test_save_reload_keeps_the_out_of_fold_table(context, tiny_splits, tmp_path, lookup_kind):
    teacher = cross_fit(build_lookup, context, folds=3, predictor="full")
    teacher.save(tmp_path / "t.pt")
    again = load_teacher(tmp_path / "t.pt")
    assert isinstance(again, CrossFittedTeacher) and again.predictor.value == "full"
    assert torch.equal(again.out_of_fold(), teacher.out_of_fold())
    assert torch.equal(again.fold_of, teacher.fold_of)
    x = tiny_splits.test.x
    assert torch.allclose(again.predict_proba(x), teacher.predict_proba(x))
    # the full-data lookup teacher is one-hot on training points, the mean is not
    assert torch.all(teacher.predict_proba(tiny_splits.train.x).max(1).values == 1)
    assert again.describe()["folds"] == 3 and again.describe()["fits"] == 4


def test_temperature_scaling_applies_to_the_out_of_fold_table(context, tiny_splits):
    teacher = cross_fit("deterministic", context, folds=2)
    tempered = calibrate(teacher, tiny_splits.val)
    targets = training_targets(tempered, tiny_splits.train)
    p = teacher.out_of_fold() ** (1.0 / tempered.temperature)
    assert torch.allclose(targets, p / p.sum(1, keepdim=True), atol=1e-5)


def test_fold_networks_are_trained_without_their_fold_and_shared_across_kinds(context, tmp_path):
    plan = CrossFitPlan.make(context.in_run_dir(tmp_path / "shared"), 2)
    det = plan.in_run_dir(tmp_path / "deterministic").build("deterministic")
    temp = plan.in_run_dir(tmp_path / "temperature").build("temperature")
    networks = [m.network for m in det.members]
    assert networks[0] is not networks[1]
    assert all(t.network is n for t, n in zip(temp.members, networks, strict=True))
    assert all(len(c.splits.train) < len(context.splits.train) for c in plan.contexts)
    for k in range(2):  # one training run per fold, logged once in the shared folder
        assert (tmp_path / "shared" / f"fold_{k}" / "network" / "metrics.jsonl").is_file()


@pytest.mark.parametrize(
    "name", ["deterministic", "temperature", "laplace", "ivon", "mfvi", "mc_dropout", "ensemble"]
)
def test_every_network_kind_cross_fits(name, context, tiny_splits, tmp_path):
    teacher = cross_fit(name, context, folds=2, **FAST_OPTIONS.get(name, {}))
    oof = training_targets(teacher, tiny_splits.train)
    assert oof.shape == (len(tiny_splits.train), tiny_splits.num_classes)
    assert torch.allclose(oof.sum(1), torch.ones(len(oof)), atol=1e-5)
    probs = predict_in_batches(teacher, tiny_splits.test)
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-5)
    teacher.save(tmp_path / "t.pt")
    again = load_teacher(tmp_path / "t.pt")
    assert torch.equal(training_targets(again, tiny_splits.train), oof)
    assert again.describe()["base_kind"] == name


def test_registry_names_are_checked(context):
    with pytest.raises(Exception, match="Did you mean 'laplace'"):
        cross_fit("laplac", context, folds=2)
    assert "deterministic" in TEACHERS


STUDY = {
    "data": {
        "name": "synthetic",
        "num_samples": 300,
        "num_classes": 3,
        "dim": 5,
        "val_fraction": 0.25,
        "test_fraction": 0.25,
    },
    "teacher": {
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 3, "batch_size": 32, "lr": 0.1},
    },
    "teachers": [
        "deterministic",
        {"name": "deterministic", "label": "det_cf", "cross_fit": 3},
        {"name": "laplace", "label": "la_cf", "cross_fit": 3, "grid_points": 3, "calibrate": True},
    ],
    "student": {
        "model": {"name": "linear"},
        "train": {"epochs": 2, "batch_size": 16, "lr": 0.1},
        "losses": [{"name": "soft_ce"}],
        "subset": {"per_class": 10},
    },
    "seeds": [0],
    "device": "cpu",
}


def test_a_study_distils_from_out_of_fold_targets(tmp_path):
    from bayesdistill.config import load_config
    from bayesdistill.io import load_torch, read_json
    from bayesdistill.runner import run_study

    out = run_study(load_config(STUDY), tmp_path / "run", progress=False)
    teachers, students = out / "seed_0" / "teachers", out / "seed_0" / "students" / "soft_ce"
    for label in ("det_cf", "la_cf"):
        summary = read_json(teachers / label / "summary.json")
        assert summary["training_targets"] == "out_of_fold"
        assert read_json(students / label / "summary.json")["targets"] == "out_of_fold"
        cached = load_torch(teachers / label / "train_probs.pt", what="targets")["probs"]
        teacher = load_teacher(teachers / label / "teacher.pt")
        assert torch.allclose(cached, training_targets(teacher, load_splits(STUDY)))
    det_cf = load_teacher(teachers / "det_cf" / "teacher.pt")
    assert torch.equal(
        load_torch(teachers / "det_cf" / "train_probs.pt", what="targets")["probs"],
        det_cf.out_of_fold(),
    )
    assert read_json(teachers / "deterministic" / "summary.json")["training_targets"] == "in_sample"
    assert read_json(students / "deterministic" / "summary.json")["targets"] == "in_sample"
    # the two cross-fitted kinds share their 3 fold networks: trained once, in one folder
    shared = sorted(p.name for p in (teachers / "cross_fit_3").iterdir())
    assert shared == ["fold_0", "fold_1", "fold_2"]
    assert not (teachers / "det_cf" / "train" / "fold_0" / "network").exists()


def load_splits(config):
    from bayesdistill.config import load_config
    from bayesdistill.runner.common import load_data

    return load_data(load_config(config).data).train


def test_held_out_distillation_trains_teachers_without_the_students_examples(tmp_path):
    from bayesdistill.config import load_config
    from bayesdistill.io import read_json
    from bayesdistill.runner import run_study
    from bayesdistill.runner.common import load_data
    from bayesdistill.runner.students import student_indices
    from bayesdistill.runner.teachers import held_out_splits

    config = load_config(
        {**STUDY, "teachers": ["deterministic"], "teacher": {**STUDY["teacher"]}},
        ["teacher.exclude_student_subset=true"],
    )
    splits = load_data(config.data)
    held = held_out_splits(config, splits, 0)
    index = student_indices(config.student, splits, 0)
    assert len(held.train) == len(splits.train) - len(index)
    rows = {tuple(r.tolist()) for r in held.train.x}
    assert not any(tuple(splits.train.x[i].tolist()) in rows for i in index.tolist())
    out = run_study(config, tmp_path / "run", progress=False)
    seed = out / "seed_0"
    assert (
        read_json(seed / "teachers" / "deterministic" / "summary.json")["training_targets"]
        == "held_out"
    )
    summary = read_json(seed / "students" / "soft_ce" / "deterministic" / "summary.json")
    assert summary["targets"] == "held_out"
    with pytest.raises(ConfigError, match="student.subset"):
        load_config(config.model_dump(mode="json"), ["student.subset=null"])


def test_cross_fit_config_errors_name_the_value():
    from bayesdistill.config import load_config

    with pytest.raises(ConfigError, match=r"teachers\.0\.cross_fit: .*got K = 1"):
        load_config({**STUDY, "teachers": [{"name": "deterministic", "cross_fit": 1}]})
    with pytest.raises(ConfigError, match="learns nothing"):
        load_config({**STUDY, "teachers": [{"name": "exact_bcp", "cross_fit": 2}]})
    with pytest.raises(ConfigError, match="drop student.augment or cross_fit"):
        load_config(STUDY, ["student.augment=[{name: noise}]"])
