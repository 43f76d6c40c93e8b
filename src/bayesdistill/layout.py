"""Where every file of a run folder lives: one class used by the runners, reports and theory.

A study (``bayesdistill study``)::

    run.json              what made the run (`bayesdistill.runner.identity`) and whether it ended
    config.yaml           the resolved config (defaults filled in): reruns reproduce it
    environment.json      package versions, determinism settings, device and CPU/GPU model
    data.json             dataset facts
    timing.json           wall-clock seconds
    seed_<s>/             one seed's pieces (`SeedLayout`):
        teacher_network/             metrics.jsonl, checkpoint.pt, network.pt, summary.json
        teachers/<label>/            teacher.pt, summary.json, train_probs.pt, train_views.pt,
                                     test_probs.pt, train/ (a kind's own training run)
        teachers/cross_fit_<K>/      fold networks shared by the kinds cross-fitted with K folds
        students/none/               the one-hot student (metrics.jsonl, checkpoint.pt,
                                     student.pt, summary.json)
        students/<loss>/<label>/     a student distilled from one teacher kind
    results.csv, results.md, plots/  the reports

A teacher run (``bayesdistill teacher``) holds run.json, config.yaml, environment.json and
one seed's pieces directly in the folder (``teacher_network/``, ``teachers/<label>/``). A
distill run (``bayesdistill distill``) holds run.json, config.yaml, environment.json,
``train_probs.pt`` (the teacher's predictions on the training set) and a student folder per
loss (``<loss>/``), or the one-hot student's files directly in the folder. A theory run
holds run.json, config.yaml, environment.json and the experiment's outputs (steps/,
figures/, metrics.jsonl, claims.json, report.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import ClassVar

IDENTITY = "run.json"
CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
DATA = "data.json"
TIMING = "timing.json"
RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
PLOTS = "plots"
SEED_PREFIX = "seed_"

NETWORK_DIR = "teacher_network"
TEACHERS_DIR = "teachers"
STUDENTS_DIR = "students"
ONE_HOT = "none"
"""The one-hot student's folder name (the pseudo teacher kind ``none``)."""

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
NETWORK_FILE = "network.pt"
STUDENT_FILE = "student.pt"
TEACHER_FILE = "teacher.pt"
TRAIN_PROBS = "train_probs.pt"
VIEW_CACHE = "train_views.pt"
TEST_PROBS = "test_probs.pt"
TEACHER_TRAIN_DIR = "train"


class RunKind(str, Enum):
    """What made a run folder (the ``command`` of its identity record)."""

    STUDY = "study"
    """``bayesdistill study`` / ``quickstart``: seeds × teacher kinds × students, reports."""
    TEACHER = "teacher"
    """``bayesdistill teacher``: one seed's teacher network and teacher kinds."""
    DISTILL = "distill"
    """``bayesdistill distill``: students of one saved teacher (or one-hot)."""
    THEORY = "theory"
    """``bayesdistill theory NAME``: one theory experiment."""
    THEORY_ALL = "theory all"
    """``bayesdistill theory all``: every theory experiment, one folder each."""


@dataclass(frozen=True)
class NetworkFiles:
    """A trained network's folder (the teacher network of a seed)."""

    folder: Path
    NETWORK_NAME: ClassVar[str] = NETWORK_FILE

    @property
    def network(self) -> Path:
        return self.folder / self.NETWORK_NAME

    @property
    def summary(self) -> Path:
        return self.folder / SUMMARY

    @property
    def metrics(self) -> Path:
        return self.folder / METRICS


@dataclass(frozen=True)
class TeacherFiles:
    """One teacher kind's folder."""

    folder: Path

    @property
    def teacher(self) -> Path:
        return self.folder / TEACHER_FILE

    @property
    def summary(self) -> Path:
        return self.folder / SUMMARY

    @property
    def train_probs(self) -> Path:
        """What students learn from: the teacher's predictions on the training set."""
        return self.folder / TRAIN_PROBS

    @property
    def train_views(self) -> Path:
        """The teacher's predictions on stored augmented views (``teacher_cache: views``)."""
        return self.folder / VIEW_CACHE

    @property
    def test_probs(self) -> Path:
        return self.folder / TEST_PROBS

    @property
    def train_dir(self) -> Path:
        """Where a kind that trains a network of its own (IVON, MFVI, ...) keeps its run."""
        return self.folder / TEACHER_TRAIN_DIR


@dataclass(frozen=True)
class StudentFiles(NetworkFiles):
    """One student's folder: a trained network's, with the student's file name."""

    NETWORK_NAME: ClassVar[str] = STUDENT_FILE


@dataclass(frozen=True)
class SeedLayout:
    """One seed's pieces: its teacher network, its teacher kinds and its students."""

    folder: Path

    @property
    def network(self) -> NetworkFiles:
        return NetworkFiles(self.folder / NETWORK_DIR)

    @property
    def teachers(self) -> Path:
        return self.folder / TEACHERS_DIR

    def teacher(self, label: str) -> TeacherFiles:
        return TeacherFiles(self.teachers / label)

    def cross_fit(self, folds: int) -> Path:
        """The fold networks shared by the kinds cross-fitted with ``folds`` folds."""
        return self.teachers / f"cross_fit_{folds}"

    @property
    def one_hot_student(self) -> StudentFiles:
        return StudentFiles(self.folder / STUDENTS_DIR / ONE_HOT)

    def student(self, loss: str, label: str) -> StudentFiles:
        """The student of loss label ``loss`` distilled from teacher kind ``label``."""
        return StudentFiles(self.folder / STUDENTS_DIR / loss / label)


@dataclass(frozen=True)
class RunLayout:
    """Every path of a run folder rooted at ``root`` (see the module docstring)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def identity(self) -> Path:
        return self.root / IDENTITY

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def environment(self) -> Path:
        return self.root / ENVIRONMENT

    @property
    def data(self) -> Path:
        return self.root / DATA

    @property
    def timing(self) -> Path:
        return self.root / TIMING

    @property
    def results_csv(self) -> Path:
        return self.root / RESULTS_CSV

    @property
    def results_md(self) -> Path:
        return self.root / RESULTS_MD

    @property
    def plots(self) -> Path:
        return self.root / PLOTS

    def seed(self, seed: int) -> SeedLayout:
        """A study's seed folder ``seed_<s>/``."""
        return SeedLayout(self.root / f"{SEED_PREFIX}{seed}")

    @property
    def pieces(self) -> SeedLayout:
        """A teacher run's one seed, kept directly in the folder."""
        return SeedLayout(self.root)

    def distilled_student(self, loss: str | None) -> StudentFiles:
        """A distill run's student of loss label ``loss``, or the one-hot student (None)."""
        return StudentFiles(self.root if loss is None else self.root / loss)

    @property
    def distill_targets(self) -> Path:
        """A distill run's cache of the teacher's predictions on the training set."""
        return self.root / TRAIN_PROBS

    def theory_experiment(self, name: str) -> RunLayout:
        """The folder of one experiment of a ``theory all`` run."""
        return RunLayout(self.root / name)

    def guess_kind(self) -> RunKind | None:
        """What the folder holds, judged by its files (for folders without ``run.json``,
        written before it existed): None when it holds no config.yaml, or nothing else
        (a run killed before its first piece could be of any kind)."""
        if not self.config.is_file():
            return None
        if all(p == self.config or p.name.endswith(".tmp") for p in self.root.iterdir()):
            return None
        if any(self.root.glob(f"{SEED_PREFIX}*")) or self.data.is_file():
            return RunKind.STUDY
        if (self.root / NETWORK_DIR).is_dir() or self.pieces.teachers.is_dir():
            return RunKind.TEACHER
        if (self.root / "claims.json").is_file() or (self.root / "steps").is_dir():
            return RunKind.THEORY
        return RunKind.DISTILL
