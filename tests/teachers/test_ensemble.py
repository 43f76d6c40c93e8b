"""Ensembles: the mean of members, round trips through a file, members of their own."""

from __future__ import annotations

import pytest
import torch

from bayesdistill.errors import CheckpointError, ConfigError
from bayesdistill.models import create_model
from bayesdistill.seeding import generator, seeded
from bayesdistill.teachers import (
    TEACHERS,
    DeterministicTeacher,
    EnsembleTeacher,
    IVONTeacher,
    MCDropoutTeacher,
    TeacherContext,
    TemperatureTeacher,
    TemperedTeacher,
    load_teacher,
)
from bayesdistill.train import RunOptions, TrainSettings

from ..conftest import make_mlp


class Uniform:
    """A bare `Teacher` (not savable): the uniform distribution over 3 classes."""

    num_classes = 3

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((len(x), 3), 1.0 / 3)


def test_identical_members_equal_one_member(trained_mlp, tiny_splits):
    member = TemperatureTeacher(trained_mlp, 1.7)
    x = tiny_splits.test.x
    ensemble = EnsembleTeacher([member, member, member])
    assert torch.allclose(ensemble.predict_proba(x), member.predict_proba(x), atol=1e-7)


def test_two_teachers_average(trained_mlp, tiny_splits):
    first = DeterministicTeacher(trained_mlp)
    second = TemperedTeacher(DeterministicTeacher(make_mlp(tiny_splits, seed=5)), 3.0)
    x = tiny_splits.test.x
    expected = (first.predict_proba(x) + second.predict_proba(x)) / 2
    assert torch.allclose(EnsembleTeacher([first, second]).predict_proba(x), expected, atol=1e-7)
    mixed = EnsembleTeacher([first, Uniform()])  # any Teacher may be a member
    expected = (first.predict_proba(x) + 1.0 / 3) / 2
    assert torch.allclose(mixed.predict_proba(x), expected, atol=1e-7)


def test_save_and_reload_keeps_every_member(trained_mlp, tiny_splits, tmp_path):
    std = {n: torch.full_like(p, 0.05) for n, p in trained_mlp.named_parameters()}
    ensemble = EnsembleTeacher(
        [
            DeterministicTeacher(trained_mlp),
            TemperedTeacher(TemperatureTeacher(make_mlp(tiny_splits, seed=2), 2.0), 1.5),
            IVONTeacher(make_mlp(tiny_splits, seed=3), std, num_samples=3, seed=4),
        ]
    )
    ensemble.save(tmp_path / "ensemble.pt")
    reloaded = load_teacher(tmp_path / "ensemble.pt")
    assert [type(m) for m in reloaded.members] == [type(m) for m in ensemble.members]
    x = tiny_splits.test.x
    assert torch.allclose(reloaded.predict_proba(x), ensemble.predict_proba(x), atol=1e-6)
    assert reloaded.describe() == ensemble.describe()


def test_bad_ensembles_are_reported(trained_mlp, tiny_splits, tmp_path):
    with pytest.raises(ConfigError, match="at least one member"):
        EnsembleTeacher([])
    wide = make_mlp(tiny_splits)
    wide.head = torch.nn.Linear(16, 5)
    with pytest.raises(ConfigError, match=r"same number of classes, got \[3, 5\]"):
        EnsembleTeacher([DeterministicTeacher(trained_mlp), DeterministicTeacher(wide)])
    with pytest.raises(TypeError, match="Uniform are not SavableTeacher"):
        EnsembleTeacher([Uniform()]).save(tmp_path / "bare.pt")
    payload = EnsembleTeacher([DeterministicTeacher(trained_mlp)]).payload()
    payload["members"][0]["kind"] = "oracle"
    with pytest.raises(CheckpointError, match="unknown kind 'oracle'"):
        EnsembleTeacher.from_payload(payload)


@pytest.fixture(scope="module")
def context(tiny_splits, trained_mlp):
    return TeacherContext(
        splits=tiny_splits,
        seed=0,
        network=trained_mlp,
        init_network=lambda: make_mlp(tiny_splits),
        train_settings=TrainSettings(epochs=3, batch_size=32, lr=0.1),
        run=RunOptions(progress=False),
    )


def test_builder_trains_members_from_their_own_init(context, tiny_splits, tmp_path):
    ensemble = TEACHERS.build("ensemble", context.in_run_dir(tmp_path), members=3)
    assert ensemble.members[0].network is context.network  # member 0 is the study's network
    weights = [m.network.head.weight for m in ensemble.members]
    assert not torch.allclose(weights[1], weights[2])
    assert not torch.allclose(weights[0], weights[1])
    for m in (1, 2):  # each extra member's own training run
        assert (tmp_path / f"member_{m}" / "network" / "metrics.jsonl").is_file()
    x = tiny_splits.test.x
    mean = torch.stack([m.predict_proba(x) for m in ensemble.members]).mean(0)
    assert torch.allclose(ensemble.predict_proba(x), mean, atol=1e-7)


def test_builder_passes_member_options_and_trains_only_what_members_need(context, tiny_splits):
    exact = TEACHERS.build("exact_bcp", context)
    # exact_bcp members need no network: nothing is trained, every member is the same
    ensemble = TEACHERS.build("ensemble", context, members=4, member_kind="exact_bcp")
    x = tiny_splits.test.x
    assert torch.allclose(ensemble.predict_proba(x), exact.predict_proba(x), atol=1e-6)
    noisy = TEACHERS.build(
        "ensemble", context, members=1, member_kind="noisy_bcp", member_options={"level": 2.0}
    )
    assert noisy.describe()["members"][0]["level"] == 2.0


def test_builder_rejects_bad_member_settings(context):
    with pytest.raises(ConfigError, match="unknown teacher 'laplas'.*Did you mean 'laplace'"):
        TEACHERS.build("ensemble", context, member_kind="laplas")
    with pytest.raises(ConfigError, match="teacher 'ivon' has no option 'samples'"):
        TEACHERS.build("ensemble", context, member_kind="ivon", member_options={"samples": 3})
    with pytest.raises(ConfigError, match="members must be >= 1"):
        TEACHERS.build("ensemble", context, members=0)
    with pytest.raises(ConfigError, match="needs a network trained with dropout"):
        TEACHERS.build("ensemble", context, members=1, member_kind="mc_dropout")


def test_an_ensemble_of_sampling_teachers_pools_their_samples(tiny_splits):
    with seeded(0):
        network = create_model(
            "mlp", tiny_splits.input_shape, tiny_splits.num_classes, hidden=(16,), dropout=0.3
        )
    members = [MCDropoutTeacher(network, num_samples=2, seed=seed) for seed in (0, 1)]
    x = tiny_splits.test.x
    pooled = []
    with torch.no_grad():
        for seed, s in [(0, 0), (0, 1), (1, 0), (1, 1)]:
            with members[0]._masks(generator(seed, s)):
                pooled.append(torch.softmax(network(x), 1))
    expected = torch.stack(pooled).mean(0)
    assert torch.allclose(EnsembleTeacher(members).predict_proba(x), expected, atol=1e-6)
