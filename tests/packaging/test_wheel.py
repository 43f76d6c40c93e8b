"""What a user installs: the wheel's contents, and the console command from a fresh venv.

The fixtures (tests/conftest.py, tests/installed.py) build the wheel of this checkout once
per session and install it in a fresh venv outside the repository that sees the declared
dependencies only; every command runs with a working directory outside the repository, so
``configs/...`` resolves to the installed package's configs.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from torchvision.datasets import CIFAR100

import bayesdistill
from bayesdistill.config import load_config
from tests.config.test_shipped_configs import (
    SMALL_NETWORKS,
    TINY,
    _expected_rows,
    _shrink_teachers,
    _shrink_training,
)
from tests.installed import REPO, InstallError, dependency_closure, trusted_checksums
from tests.vision_files import write_cifar100

PACKAGE = REPO / "src" / "bayesdistill"
CONFIGS = PACKAGE / "configs"
CIFAR100_CONFIG = "configs/cifar100/resnet50_wrn_16_2.yaml"


def _shipped_files() -> set[str]:
    """Every file under the package's configs folder, as ``configs/<path>`` (no hidden
    files, no caches)."""
    return {
        "configs/" + path.relative_to(CONFIGS).as_posix()
        for path in CONFIGS.rglob("*")
        if path.is_file()
        and not any(part.startswith(".") or part == "__pycache__" for part in path.parts)
    }


def test_wheel_holds_every_shipped_config(bayesdistill_wheel):
    shipped = _shipped_files()
    assert any(p.startswith("configs/cifar100/") for p in shipped)  # the listing sees sub-folders
    with zipfile.ZipFile(bayesdistill_wheel) as archive:
        prefix = "bayesdistill/"
        in_wheel = {
            name.removeprefix(prefix)
            for name in archive.namelist()
            if name.startswith(prefix + "configs/") and not name.endswith("/")
        }
    assert sorted(shipped - in_wheel) == [], "shipped configs missing from the wheel"
    assert sorted(in_wheel - shipped) == [], "files in the wheel that the repository lacks"


def test_fresh_venv_sees_the_wheel_and_declared_dependencies_only(installed_bayesdistill, tmp_path):
    probe = installed_bayesdistill.run_python(
        "import bayesdistill, importlib.util as u, json; print(json.dumps("
        "[bayesdistill.__file__, u.find_spec('pytest') is None, u.find_spec('click') is None]))",
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    module, no_pytest, no_click = json.loads(probe.stdout)
    site = installed_bayesdistill.site_packages
    assert Path(module).resolve().is_relative_to(site.resolve()), "not the wheel's copy"
    assert no_pytest, "pytest is installed here but not declared: it must not be visible"
    assert no_click == ("click" not in installed_bayesdistill.closure)
    assert "torch" in installed_bayesdistill.closure


def test_dependency_closure_refuses_missing_and_incompatible_requirements():
    with pytest.raises(
        InstallError,
        match=r"no-such-distribution-xyz>=1 \(required by bayesdistill\) is not installed",
    ):
        dependency_closure(["PyYAML>=6.0", "no-such-distribution-xyz>=1"])
    with pytest.raises(InstallError, match=r"numpy>=999.*is installed"):
        dependency_closure(["numpy>=999"])
    assert "numpy" in dependency_closure(["scipy>=1.10"])  # followed transitively


def test_version(installed_bayesdistill, tmp_path):
    result = installed_bayesdistill.run("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"bayesdistill {installed_bayesdistill.version}\n"
    assert installed_bayesdistill.version == bayesdistill.__version__


def test_list_configs_names_every_shipped_config(installed_bayesdistill, tmp_path):
    result = installed_bayesdistill.run("list", "configs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = {line.strip() for line in result.stdout.splitlines() if line.startswith("  ")}
    expected = {p for p in _shipped_files() if p.endswith(".yaml")}
    assert sorted(expected - listed) == [], "shipped configs the installed command does not list"
    assert sorted(listed - expected) == []


def test_usage_error_is_one_message(installed_bayesdistill, tmp_path):
    result = installed_bayesdistill.run("studyy", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "No such command" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cifar100_config_runs_a_step_from_the_installed_command(installed_bayesdistill, tmp_path):
    """The paper's main CIFAR-100 config, named as ``configs/...`` from a folder that has no
    such file, runs one step (ResNet-8 networks) on tiny files in the official format."""
    work = tmp_path / "work"
    work.mkdir()
    data = tmp_path / "data"
    write_cifar100(data, n_train=200, n_test=8, cycle=True)  # every class once at least
    path = CONFIGS / CIFAR100_CONFIG.removeprefix("configs/")
    config = load_config(path)
    assert config.data.name == "cifar100"
    overrides = [*TINY, f"data.root={data}", "data.val_fraction=0.1"]
    overrides += _shrink_training(config) + _shrink_teachers(config) + SMALL_NETWORKS
    out = tmp_path / "run"
    result = installed_bayesdistill.run(
        "study",
        CIFAR100_CONFIG,
        "--out",
        out,
        "--no-progress",
        *overrides,
        cwd=work,
        setattrs=trusted_checksums(CIFAR100, data),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    rows = (out / "results.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) - 1 == _expected_rows(load_config(path, overrides))
