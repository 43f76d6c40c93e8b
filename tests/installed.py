"""The ``bayesdistill`` command as a user installs it: from a wheel, in a fresh venv.

STYLE.md, "Test what a user installs": the editable install of the development venv sees
files the wheel may leave out (package data) and imports the wheel may not declare (a
package that happens to be installed on this machine). Tests that take the session fixtures
``bayesdistill_wheel`` and ``installed_bayesdistill`` (tests/conftest.py) see neither:

1. the sources needed to build (``pyproject.toml``, ``README.md``, ``src/``) are copied out
   of the repository, and the wheel is built from the copy with the running interpreter
   (``pip wheel --no-deps --no-build-isolation``), so the build leaves no ``build/`` or
   ``*.egg-info`` in the checkout and two sessions do not build into the same folder;
2. a fresh venv (``python -m venv --without-pip``) is made outside the repository and the
   wheel is installed there without dependencies (``pip --python <venv> install --no-deps``);
3. the venv sees the declared dependencies, and only them: the closure of the wheel's
   ``Requires-Dist`` (markers evaluated, extras followed) is looked up in the running
   environment, the top-level entries each distribution's RECORD lists are symlinked into
   one folder, and a ``.pth`` file in the venv's site-packages names that folder. The
   development venv's site-packages is not on the path, so neither the editable install of
   bayesdistill (its ``__editable__`` .pth is never read) nor an undeclared package is
   importable. In particular ``click``, which Typer ≥ 0.26 no longer installs, is invisible
   unless a declared dependency requires it; no import blocker or sitecustomize is involved;
4. the fixture then checks, in the venv, that ``import bayesdistill`` resolves to its
   site-packages, that ``click`` is importable exactly when the closure holds it, and that
   ``pip check`` finds every requirement satisfied; a declared dependency missing from (or
   at a version outside its specifier in) the running environment fails it at step 3.

Trade-off: the dependencies are reused, not re-resolved. A declaration that is missing is
caught (its package is not visible); a lower bound that is too low, or a conflict that only
a fresh resolution would pick, is not. A full-resolution install (``pip install <wheel>``
into an empty venv, with torch and its CUDA wheels) costs about 1.5 minutes and 5 GB per
venv on the development machine; reusing the closure costs a few seconds and no disk.
``.pth`` files of dependencies are not read (the only one in the closure today is
setuptools' ``distutils-precedence.pth``, which nothing here needs).

Vision datasets: torchvision checks each file against the official MD5 before reading it,
so a test that runs a CIFAR/SVHN config from the installed command on tiny files passes
``setattrs`` (e.g. from `trusted_checksums`) to `InstalledCommand.run`. A start-up hook of
the venv (``_bayesdistill_test_hooks``, outside the installed package, inert unless
``BAYESDISTILL_TEST_SETATTR`` is set) applies them before the command starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.parser import HeaderParser
from functools import cached_property
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
BUILD_FILES = ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "setup.py", "MANIFEST.in")
"""Files of the repository root that a build may read (those that exist are copied)."""
COMMAND = "bayesdistill"
SETATTR_ENV = "BAYESDISTILL_TEST_SETATTR"
HOOK_MODULE = "_bayesdistill_test_hooks"
HOOK_SOURCE = f'''"""Test-only start-up hook of a venv made by tests/installed.py (not part of bayesdistill).

Inert unless {SETATTR_ENV} names a JSON file {{"module:Class.attr": value, ...}}; then it
sets each attribute before the program starts (tiny dataset files' checksums, say).
"""

import os

_spec = os.environ.get("{SETATTR_ENV}")
if _spec:
    import importlib
    import json

    with open(_spec, encoding="utf-8") as _handle:
        for _target, _value in json.load(_handle).items():
            _module, _, _path = _target.partition(":")
            *_owners, _attr = _path.split(".")
            _obj = importlib.import_module(_module)
            for _owner in _owners:
                _obj = getattr(_obj, _owner)
            setattr(_obj, _attr, _value)
'''
STEP_TIMEOUT_S = 300
"""Limit for one build/install step (each takes a few seconds)."""


class InstallError(RuntimeError):
    """The wheel could not be built or installed, or the fresh venv is not what it claims."""


@dataclass(frozen=True)
class InstalledCommand:
    """A fresh venv outside the repository with bayesdistill installed from ``wheel``.

    ``deps`` is the folder of symlinks to the declared dependency closure (``closure``: the
    canonical names of those distributions) that the venv's ``.pth`` puts on its path.
    """

    wheel: Path
    venv: Path
    deps: Path
    closure: tuple[str, ...]

    @property
    def bin(self) -> Path:
        return self.venv / ("Scripts" if os.name == "nt" else "bin")

    @property
    def python(self) -> Path:
        return self.bin / ("python.exe" if os.name == "nt" else "python")

    @property
    def executable(self) -> Path:
        """The console script the wheel's entry point made (``<venv>/bin/bayesdistill``)."""
        return self.bin / (f"{COMMAND}.exe" if os.name == "nt" else COMMAND)

    @cached_property
    def site_packages(self) -> Path:
        return Path(_output([self.python, "-c", _PURELIB], cwd=self.venv).strip())

    @property
    def version(self) -> str:
        """The version the wheel declares (its METADATA)."""
        return wheel_metadata(self.wheel)["Version"]

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """This process's environment, with the venv first on PATH and nothing that would
        add the checkout or a user site-packages to the venv's path."""
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", SETATTR_ENV)
        }
        env.update(
            VIRTUAL_ENV=str(self.venv),
            PATH=os.pathsep.join([str(self.bin), env.get("PATH", "")]),
            PYTHONNOUSERSITE="1",
        )
        env.update(extra or {})
        return env

    def run(
        self,
        *args: str | os.PathLike[str],
        cwd: Path,
        setattrs: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``bayesdistill ARGS`` (the installed console script) in ``cwd``, which must
        lie outside the repository; the output is captured as text, the exit status is not
        checked. ``setattrs`` (``{"module:Class.attr": value}``, JSON values) are set in the
        command's process before it starts."""
        return self._run([self.executable, *args], cwd, setattrs, env, timeout)

    def run_python(
        self,
        code: str,
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -c CODE`` with the venv's interpreter in ``cwd`` (outside the repo)."""
        return self._run([self.python, "-c", code], cwd, None, env, timeout)

    def _run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        cwd: Path,
        setattrs: Mapping[str, object] | None,
        env: Mapping[str, str] | None,
        timeout: float,
    ) -> subprocess.CompletedProcess[str]:
        check_outside_repository(cwd)
        extra = dict(env or {})
        spec = None
        if setattrs:
            handle, name = tempfile.mkstemp(suffix=".json", prefix="setattr-", dir=self.venv.parent)
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(dict(setattrs), out)
            spec = Path(name)
            extra[SETATTR_ENV] = name
        try:
            return subprocess.run(
                [str(a) for a in argv],
                cwd=cwd,
                env=self.env(extra),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        finally:
            if spec is not None:
                spec.unlink()


def check_outside_repository(path: Path) -> None:
    if Path(path).resolve().is_relative_to(REPO):
        raise InstallError(
            f"'{path}' lies inside the repository ({REPO}); the installed command must be "
            "tried from elsewhere (set pytest's --basetemp, or TMPDIR, outside it)"
        )


def build_wheel(root: Path) -> Path:
    """Build the wheel of this checkout into ``root/wheel`` (sources copied to
    ``root/source`` first) with the running interpreter; return its path."""
    check_outside_repository(root)
    source = root / "source"
    source.mkdir(parents=True)
    for name in BUILD_FILES:
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "src",
        source / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    out = root / "wheel"
    _output(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("--no-index", "--disable-pip-version-check", "--quiet", "--wheel-dir", out, source),
        ],
        cwd=root,
    )
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != 1:
        raise InstallError(f"expected one wheel in '{out}', found {[w.name for w in wheels]}")
    return wheels[0]


def wheel_metadata(wheel: Path):
    """The wheel's ``*.dist-info/METADATA`` as an email message (``msg["Version"]``,
    ``msg.get_all("Requires-Dist")``)."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return HeaderParser().parsestr(archive.read(name).decode("utf-8"))


def dependency_closure(requirements: Sequence[str]) -> dict[str, metadata.Distribution]:
    """The distributions of the running environment that ``requirements`` need, transitively
    (markers evaluated for this interpreter, requested extras followed), by canonical name.

    Raises `InstallError` naming each requirement that is not installed or whose installed
    version is outside its specifier.
    """
    found: dict[str, metadata.Distribution] = {}
    extras_seen: dict[str, set[str]] = {}
    problems: list[str] = []
    stack = [(Requirement(r), "bayesdistill") for r in requirements]
    while stack:
        requirement, wanted_by = stack.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        first_visit = name not in found
        if first_visit:
            try:
                found[name] = metadata.distribution(requirement.name)
            except metadata.PackageNotFoundError:
                problems.append(f"{requirement} (required by {wanted_by}) is not installed")
                continue
        dist = found[name]
        if not requirement.specifier.contains(dist.version, prereleases=True):
            problems.append(
                f"{requirement} (required by {wanted_by}), but {dist.version} is installed"
            )
        # a distribution's own requirements: its plain ones once, those of an extra when
        # some requirement first asks for that extra
        extras = set(requirement.extras) - extras_seen.setdefault(name, set())
        extras_seen[name] |= extras
        active = extras | ({""} if first_visit else set())
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in active):
                sub.marker = None  # evaluated here, for this interpreter
                stack.append((sub, name))
    if problems:
        raise InstallError(
            "the running environment does not satisfy the wheel's requirements: "
            + "; ".join(sorted(problems))
        )
    return found


def link_distributions(dists: Mapping[str, metadata.Distribution], folder: Path) -> None:
    """Symlink into ``folder`` every top-level entry (package, module, dist-info) that the
    RECORD of each distribution lists; skips ``.pth`` files and scripts outside site-packages."""
    folder.mkdir(parents=True)
    for name, dist in sorted(dists.items()):
        if dist.files is None:
            raise InstallError(f"distribution '{name}' has no RECORD; cannot tell its files")
        for top in sorted({f.parts[0] for f in dist.files}):
            if top in ("..", "__pycache__") or top.endswith(".pth") or (folder / top).exists():
                continue
            target = Path(str(dist.locate_file(top)))
            if target.exists():
                (folder / top).symlink_to(target, target_is_directory=target.is_dir())


def install(wheel: Path, root: Path) -> InstalledCommand:
    """A fresh venv in ``root/venv`` with ``wheel`` installed and its declared dependency
    closure visible (see the module docstring); verified before it is returned."""
    check_outside_repository(root)
    closure = dependency_closure(wheel_metadata(wheel).get_all("Requires-Dist") or [])
    deps = root / "deps"
    link_distributions(closure, deps)
    hooks = root / "hooks"
    hooks.mkdir()
    (hooks / f"{HOOK_MODULE}.py").write_text(HOOK_SOURCE, encoding="utf-8")
    venv = root / "venv"
    _output([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root)
    installed = InstalledCommand(wheel=wheel, venv=venv, deps=deps, closure=tuple(sorted(closure)))
    pip = [sys.executable, "-m", "pip", "--python", installed.python, "--disable-pip-version-check"]
    _output([*pip, "install", "--no-deps", "--no-index", "--quiet", wheel], cwd=root)
    site = installed.site_packages
    (site / "_bayesdistill_test_deps.pth").write_text(
        f"{deps}\n{hooks}\nimport {HOOK_MODULE}\n", encoding="utf-8"
    )
    _output([*pip, "check"], cwd=root)  # every requirement of what the venv sees is satisfied
    verify(installed, site)
    return installed


_PURELIB = "import sysconfig; print(sysconfig.get_path('purelib'))"
_PROBE = """
import importlib.util, json, sys
import bayesdistill
print(json.dumps({
    "bayesdistill": bayesdistill.__file__,
    "click": importlib.util.find_spec("click") is not None,
    "path": sys.path,
}))
"""


def verify(installed: InstalledCommand, site: Path) -> None:
    """``import bayesdistill`` is the wheel's copy; click is visible exactly when declared;
    nothing of the checkout is on the path."""
    probe = json.loads(_output([installed.python, "-c", _PROBE], cwd=installed.venv.parent))
    imported = Path(probe["bayesdistill"]).resolve()
    if not imported.is_relative_to(site.resolve()):
        raise InstallError(
            f"'import bayesdistill' in the fresh venv gives '{imported}', not the wheel's copy "
            f"under '{site}'"
        )
    if probe["click"] != ("click" in installed.closure):
        raise InstallError(
            f"click is {'' if probe['click'] else 'not '}importable in the fresh venv but "
            f"{'is' if 'click' in installed.closure else 'is not'} a declared dependency"
        )
    inside = [p for p in probe["path"] if p and Path(p).resolve().is_relative_to(REPO)]
    if inside:
        raise InstallError(f"the fresh venv's sys.path holds paths in the repository: {inside}")


def trusted_checksums(dataset_cls: type, root: Path) -> dict[str, object]:
    """``setattrs`` for `InstalledCommand.run` that make torchvision's ``dataset_cls``
    (CIFAR10, CIFAR100) accept the files written under ``root`` (tests/vision_files.py)."""
    from tests.vision_files import md5

    base = Path(root) / dataset_cls.base_folder
    target = f"{dataset_cls.__module__}:{dataset_cls.__qualname__}"
    out: dict[str, object] = {
        f"{target}.{attr}": [[name, md5(base / name)] for name, _ in getattr(dataset_cls, attr)]
        for attr in ("train_list", "test_list")
    }
    meta = dataset_cls.meta
    out[f"{target}.meta"] = {**meta, "md5": md5(base / meta["filename"])}
    return out


def _output(argv: Sequence[str | os.PathLike[str]], cwd: Path) -> str:
    """Run a build/install step; its stdout, or `InstallError` with its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise InstallError(
            f"'{' '.join(str(a) for a in argv)}' exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result.stdout
