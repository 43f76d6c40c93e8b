"""Every shipped config validates and runs a step of its study on tiny data."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from bayesdistill.config import load_config
from bayesdistill.runner import run_study

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


def _tiny_data(config) -> list[str]:
    name = config.data.name
    if name == "mnist1d":
        return ["data.num_samples=200"]
    if name == "synthetic":
        return ["data.num_samples=300"]
    return []


def _shrink_teachers(config) -> list[str]:
    out = []
    for i, kind in enumerate(config.teachers):
        if kind.name == "ivon":
            out += [f"teachers.{i}.epochs=1", f"teachers.{i}.num_samples=2"]
        if kind.name == "laplace":
            out.append(f"teachers.{i}.grid_points=3")
    return out


def test_configs_are_shipped():
    assert any(p.name == "quickstart.yaml" for p in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_config_runs_a_step(path, tmp_path):
    config = load_config(path)
    overrides = TINY + _tiny_data(config) + _shrink_teachers(config)
    if config.student.subset is not None and config.student.subset.per_class is not None:
        overrides.append("student.subset.per_class=2")
    small = load_config(path, overrides)
    out = run_study(small, tmp_path / "run", progress=False)
    assert (out / "results.csv").is_file() and (out / "results.md").is_file()
    rows = (out / "results.csv").read_text().splitlines()
    n_kinds = len(small.teachers)
    n_network_kinds = sum(k.name != "none" for k in small.teachers)
    expected = (
        n_network_kinds + (n_kinds - n_network_kinds) + n_network_kinds * len(small.student.losses)
    )
    assert len(rows) - 1 == expected
