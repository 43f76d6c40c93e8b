"""Every shipped config validates and runs a step of its study on tiny data.

CIFAR-10/100 and SVHN configs read tiny files in the official formats, written here (see
`tests.vision_files`). The default run swaps their networks for ResNet-8 (one CPU step of
a ResNet-50 teacher and its MFVI copy costs about a minute per config); ``pytest -m slow``
runs each with the networks it names.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from torchvision.datasets import CIFAR10, CIFAR100

from bayesdistill.config import load_config
from bayesdistill.runner import run_study
from tests.vision_files import (
    trust_cifar_files,
    trust_svhn_files,
    write_cifar10,
    write_cifar100,
    write_svhn,
)

CONFIG_DIR = Path(str(resources.files("bayesdistill") / "configs"))
SHIPPED = sorted(
    p for p in CONFIG_DIR.rglob("*.yaml") if "theory" not in p.relative_to(CONFIG_DIR).parts
)
# theory configs have their own schema and smoke tests (tests/theory/test_runner.py)

# Shrink any shipped study to seconds: one seed, one epoch, tiny data.
TINY = [
    "seeds=[0]",
    "teacher.train.epochs=1",
    "student.train.epochs=1",
    "device=cpu",
]


def _tiny_data(config, root: Path, monkeypatch) -> list[str]:
    """Overrides that shrink the config's dataset (writing tiny vision files under root)."""
    name = config.data.name
    if name == "mnist1d":
        return ["data.num_samples=200"]
    if name == "synthetic":
        return ["data.num_samples=300"]
    if name == "cifar10":
        write_cifar10(root, per_batch=8, n_test=8)
        trust_cifar_files(monkeypatch, CIFAR10, root)
    elif name == "cifar100":
        write_cifar100(root, n_train=200, n_test=8, cycle=True)  # every class: few-shot
        trust_cifar_files(monkeypatch, CIFAR100, root)
    elif name == "svhn":
        write_svhn(root, {"train": 40, "test": 8})
        trust_svhn_files(monkeypatch, root)
    else:
        raise AssertionError(f"no tiny data for shipped dataset '{name}'")
    return [f"data.root={root}", "data.val_fraction=0.1"]


def _shrink_training(config) -> list[str]:
    """One small step per network: tiny batches, no milestones past the single epoch."""
    out = []
    for part in ("teacher", "student"):
        out += [
            f"{part}.train.epochs=1",
            f"{part}.train.batch_size=16",
            f"{part}.train.warmup_epochs=0",
        ]
        if getattr(config, part).train.milestones:
            out.append(f"{part}.train.milestones=[]")
    return out


def _shrink_teachers(config) -> list[str]:
    out = []
    for i, kind in enumerate(config.teachers):
        if kind.name in ("ivon", "mfvi", "mc_dropout"):
            out.append(f"teachers.{i}.num_samples=2")
        if kind.name in ("ivon", "mfvi", "mcmi"):
            out.append(f"teachers.{i}.epochs=1")
        if kind.name == "laplace":
            out.append(f"teachers.{i}.grid_points=3")
            if kind.options.get("link_approx") == "mc":
                out.append(f"teachers.{i}.n_samples=2")
        if kind.name == "ensemble":
            out.append(f"teachers.{i}.members=2")
        if kind.cross_fit is not None:
            out.append(f"teachers.{i}.cross_fit=2")
    return out


def _shrink_losses(config) -> list[str]:
    """A tuned loss keeps two points of its grid (the first value of each option, and the
    last of the first option), so the selection still has a choice to make."""
    out = []
    for i, loss in enumerate(config.student.losses):
        if loss.tune:
            first = {k: [v[0]] for k, v in loss.tune.items()}
            key = next(iter(loss.tune))
            first[key] = [loss.tune[key][0], loss.tune[key][-1]]
            grid = ", ".join(f"{k}: {v}" for k, v in first.items())
            out.append(f"student.losses.{i}.tune={{{grid}}}")
    return out


def _expected_rows(config) -> int:
    """One row per teacher, one per one-hot student, one per (loss, teacher) it applies to
    (a tuned loss reports its chosen grid point: one row too)."""
    kinds = [k for k in config.teachers if k.name != "none"]
    onehot = len(config.teachers) - len(kinds)
    students = sum(loss.applies_to(k.key) for loss in config.student.losses for k in kinds)
    return len(kinds) + onehot + students


def test_configs_are_shipped():
    assert any(p.name == "quickstart.yaml" for p in SHIPPED)


VISION = [p for p in SHIPPED if load_config(p).data.name in ("cifar10", "cifar100", "svhn")]
SMALL_NETWORKS = ["teacher.model=resnet8", "student.model=resnet8"]


def _run_a_step(path: Path, tmp_path: Path, monkeypatch, extra: list[str]) -> None:
    config = load_config(path)
    overrides = TINY + _tiny_data(config, tmp_path / "data", monkeypatch)
    overrides += _shrink_training(config) + _shrink_teachers(config) + _shrink_losses(config)
    overrides += extra
    subset = config.student.subset
    if subset is not None:
        overrides.append(
            "student.subset.per_class=2" if subset.per_class else "student.subset.fraction=0.5"
        )
    small = load_config(path, overrides)
    out = run_study(small, tmp_path / "run", progress=False)
    assert (out / "results.csv").is_file() and (out / "results.md").is_file()
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) - 1 == _expected_rows(small)


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(CONFIG_DIR)) for p in SHIPPED])
def test_shipped_config_runs_a_step(path, tmp_path, monkeypatch):
    extra = SMALL_NETWORKS if path in VISION else []
    _run_a_step(path, tmp_path, monkeypatch, extra)


@pytest.mark.slow
@pytest.mark.parametrize("path", VISION, ids=[str(p.relative_to(CONFIG_DIR)) for p in VISION])
def test_vision_config_runs_a_step_with_its_own_networks(path, tmp_path, monkeypatch):
    _run_a_step(path, tmp_path, monkeypatch, [])


def test_paper_configs_use_the_standard_cifar100_protocol():
    """REFERENCE.md §5: SGD lr 0.05, momentum 0.9, wd 5e-4, batch 64, 240 epochs, ×0.1 at
    150/180/210, crop + flip; the teachers of the paper's table."""
    paper = sorted((CONFIG_DIR / "cifar100").glob("*.yaml"))
    assert len(paper) >= 4
    for path in paper:
        config = load_config(path)
        assert config.data.name == "cifar100" and config.data.standardize.value == "dataset"
        for part in (config.teacher, config.student):
            t = part.train
            assert (t.optimizer.value, t.lr, t.momentum, t.weight_decay) == ("sgd", 0.05, 0.9, 5e-4)
            assert (t.batch_size, t.epochs, t.milestones, t.gamma) == (
                64,
                240,
                (150, 180, 210),
                0.1,
            )
            assert [a.name for a in part.augment] == ["cifar"]
        names = {k.name for k in config.teachers}
        assert {"none", "deterministic"} <= names and ({"laplace", "mfvi"} & names), path.name
    pairs = {(load_config(p).teacher.model.name, load_config(p).student.model.name) for p in paper}
    assert {
        ("resnet50", "wrn_16_2"),
        ("resnet50", "vgg8"),
        ("vgg13", "wrn_40_1"),
        ("resnet50", "wrn_40_2"),
    } <= pairs
