"""environment.json (what a run's numbers depend on) and the repository's constraints.txt.

``python -m tests.runner.test_environment`` rewrites constraints.txt from this environment:
the exact versions of bayesdistill's dependency closure, development extra included.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from importlib import metadata

import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bayesdistill.config import load_config
from bayesdistill.runner import run_teachers
from bayesdistill.runner.environment import environment_record
from tests.installed import REPO, dependency_closure

CONSTRAINTS = REPO / "constraints.txt"
EXTRAS = ("dev",)
TINY = {
    "data": {"name": "synthetic", "num_samples": 200, "num_classes": 3, "dim": 4},
    "teacher": {"model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 1, "batch_size": 32}},
    "teachers": ["deterministic"],
    "seeds": [0],
    "device": "cpu",
}
RECORDED = ("bayesdistill", "torch", "torchvision", "laplace-torch", "ivon-opt", "numpy", "scipy")


def project_requirements() -> list[str]:
    """bayesdistill's requirements with the extras in `EXTRAS`, markers evaluated here."""
    out = []
    for line in metadata.requires("bayesdistill") or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": e}) for e in ("", *EXTRAS)):
            requirement.marker = None
            out.append(str(requirement))
    return out


def constraints_text() -> str:
    """constraints.txt for this environment (`dependency_closure` of the requirements)."""
    closure = dependency_closure(project_requirements())
    lines = [
        "# Exact versions of bayesdistill's dependencies (development extra included) that",
        '# produced the documented numbers: pip install -e ".[dev]" -c constraints.txt',
        f"# Python {sys.version.split()[0]}; regenerate with "
        "`python -m tests.runner.test_environment`.",
    ]
    lines += sorted(
        f"{dist.metadata['Name']}=={dist.version}"
        for name, dist in closure.items()
        if name != "bayesdistill"
    )
    return "\n".join(lines) + "\n"


def _pinned() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: '{line}' is not name==version"
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_every_dependency_exactly():
    needed = set(dependency_closure(project_requirements())) - {"bayesdistill"}
    missing = sorted(needed - set(_pinned()))
    assert not missing, (
        f"constraints.txt lacks {missing}; regenerate it with "
        "`python -m tests.runner.test_environment`"
    )


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("env") / "run"
    run_teachers(load_config(TINY), out, progress=False)
    return out


def test_environment_json_records_versions_determinism_and_hardware(teacher_run):
    env = json.loads((teacher_run / "environment.json").read_text())
    assert set(env) >= {
        "packages",
        "torch_determinism",
        "device",
        "cpu",
        "gpu",
        "python",
        "os",
        "cuda",
        "cudnn",
    }
    for name in RECORDED:
        assert env["packages"][name] == metadata.version(name), name
    assert "POT" in env["packages"] and "laplace-torch" in env["packages"]
    determinism = env["torch_determinism"]
    assert determinism["deterministic_algorithms"] == torch.are_deterministic_algorithms_enabled()
    assert determinism["cudnn_deterministic"] == torch.backends.cudnn.deterministic
    assert determinism["cudnn_benchmark"] == torch.backends.cudnn.benchmark
    assert env["device"] == "cpu" and env["gpu"] is None
    assert env["cpu"] and env["python"] == sys.version.split()[0]


def test_a_resume_in_another_environment_is_recorded_and_warned(teacher_run, tmp_path, caplog):
    copy = tmp_path / "copy"
    shutil.copytree(teacher_run, copy)
    env = json.loads((copy / "environment.json").read_text())
    env["packages"]["torch"] = "0.0.1"
    (copy / "environment.json").write_text(json.dumps(env))
    record = json.loads((copy / "run.json").read_text())
    record["finished"] = False  # as if killed
    (copy / "run.json").write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger="bayesdistill"):
        run_teachers(load_config(TINY), copy, resume=True, progress=False)
    assert "packages.torch: '0.0.1' -> " in caplog.text
    after = json.loads((copy / "environment.json").read_text())
    assert after["packages"]["torch"] == "0.0.1"  # the start's environment is kept
    (resumed,) = after["resumed_in"]
    assert resumed["packages"]["torch"] == metadata.version("torch")


def test_environment_record_names_a_cuda_device():
    if not torch.cuda.is_available():
        assert environment_record(torch.device("cpu"))["gpu"] is None
        pytest.skip("no CUDA device here")
    env = environment_record(torch.device("cuda", 0))
    assert env["gpu"]["name"] == torch.cuda.get_device_name(0)


if __name__ == "__main__":
    CONSTRAINTS.write_text(constraints_text(), encoding="utf-8")
    print(f"wrote {CONSTRAINTS}")
