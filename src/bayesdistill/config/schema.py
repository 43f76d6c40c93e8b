"""The typed config schema. YAML files hold only overrides of these defaults.

Components picked from a registry (dataset, model, loss, teacher kind, augmentation) are
written as ``{name: <registered name>, <option>: <value>, ...}``; their options are the
keyword-only parameters of the registered callable, validated by the registry. A student
loss may instead be a weighted sum ``{label: ..., terms: [{name, weight, <options>}, ...]}``
(`LossConfig`). Everything else is a fixed, typed field; unknown keys are errors.
"""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic import (
    BaseModel,
    Field,
    field_validator,
    model_validator,
)

from bayesdistill.config.losses import LossConfig, LossTermConfig
from bayesdistill.config.runtime import ExecutorConfig, ExecutorName, LogConfig, RuntimeConfig
from bayesdistill.config.specs import NamedSpec, _Strict
from bayesdistill.data import AUGMENTATIONS, DATASETS, Standardization
from bayesdistill.devices import check_device
from bayesdistill.models import MODELS
from bayesdistill.teachers import TEACHERS, learns_from_data
from bayesdistill.teachers.cross_fit import CrossFitPredictor, check_folds
from bayesdistill.train.settings import TrainSettings
from bayesdistill.train.targets import TeacherCache
from bayesdistill.train.views import DEFAULT_VIEWS

NO_TEACHER = "none"
DEFAULT_TEST_FRACTION = 0.2
"""``data.test_fraction`` of a dataset without its own test split, when not given."""
"""Pseudo teacher kind of a study: the student trained on one-hot labels alone."""
PARAMETRIC_AUGMENTATIONS = tuple(
    name for name in AUGMENTATIONS.names() if AUGMENTATIONS.entry(name).tags.get("parametric")
)
"""Augmentations whose per-example randomness can be stored (`teacher_cache: views`)."""


class ModelConfig(NamedSpec):
    """A network from the model registry (``bayesdistill list`` shows the options)."""

    registry = MODELS


class AugmentConfig(NamedSpec):
    """One batch augmentation."""

    registry = AUGMENTATIONS


class DataConfig(NamedSpec):
    """A dataset from the registry, how it is split, and how inputs are standardised.

    ``val_fraction`` of the training pool is held out for validation. ``test_fraction``
    (default `DEFAULT_TEST_FRACTION`) is held out for testing when the dataset has no test
    split of its own; a dataset with its own test split (MNIST-1D, CIFAR, an ``npz`` file
    with ``x_test``) tests on that split, and giving ``test_fraction`` for it is an error.
    """

    registry = DATASETS

    name: str = "mnist1d"
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float | None = Field(None, ge=0.0, lt=1.0)
    split_seed: int = 0
    standardize: Standardization = Standardization.FEATURE


class TeacherKindConfig(NamedSpec):
    """One teacher kind of a study: a teacher-registry name (or ``none``) and its options.

    ``label`` names it in results (default: the name), so one study can compare, e.g., two
    Laplace settings. ``calibrate: true`` adds temperature scaling on top of the teacher
    (p^(1/T) renormalised, T fitted on validation NLL). A bare string ``"laplace"`` is
    shorthand for ``{name: laplace}``. ``cross_fit: K`` (K >= 2) builds the kind K times, each
    without one of K stratified folds of the training set, and gives every training example
    the prediction of the teacher that did not see it (`bayesdistill.teachers.cross_fit`);
    elsewhere it answers with ``cross_fit_predictor``: the mean of the K teachers (default) or
    a teacher built on all the data (``full``). Its cost is K teacher fits.
    """

    registry = TEACHERS
    reserved = (NO_TEACHER,)

    label: str | None = None
    calibrate: bool = False
    cross_fit: int | None = None
    cross_fit_predictor: CrossFitPredictor = CrossFitPredictor.MEAN

    @field_validator("cross_fit", mode="before")
    @classmethod
    def _folds(cls, value: Any) -> Any:
        return value if value is None else check_folds(value)

    @model_validator(mode="after")
    def _cross_fit_learns(self) -> TeacherKindConfig:
        if self.cross_fit is not None and (
            self.name == NO_TEACHER or not learns_from_data(self.name, self.options)
        ):
            raise ValueError(
                f"teacher '{self.name}' learns nothing from the training set, so cross_fit "
                "changes nothing; cross-fit a teacher kind fitted to data"
            )
        return self

    @property
    def key(self) -> str:
        return self.label or self.name


class SubsetConfig(_Strict):
    """A per-class subset of the student's training data (few-shot distillation)."""

    per_class: int | None = Field(None, ge=1)
    fraction: float | None = Field(None, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _exactly_one(self) -> SubsetConfig:
        if (self.per_class is None) == (self.fraction is None):
            raise ValueError(
                "give exactly one of per_class (examples per class) or fraction (of each class)"
            )
        return self


def _default_teacher_model() -> ModelConfig:
    return ModelConfig(name="cnn1d", channels=(32, 32, 32))


def _default_student_model() -> ModelConfig:
    return ModelConfig(name="mlp", hidden=(64,))


class TeacherNetworkConfig(_Strict):
    """The network every network-based teacher kind is built from, and its training.

    ``augment`` applies to the network's training and to every teacher kind that trains a
    network of its own (IVON, MFVI, MSE, MCMI, ensemble members).
    ``exclude_student_subset: true`` (held-out distillation) trains the teachers without the
    student's per-class subset (``student.subset``), so their predictions there are
    out-of-sample.
    ``checkpoint: PATH`` uses the trained weights in that file (a state dict of ``model``,
    also in the mdistiller/RepDistiller layout: `bayesdistill.models.load_teacher_checkpoint`)
    instead of training the network; ``train`` then only applies to kinds that train networks.
    """

    model: ModelConfig = Field(default_factory=_default_teacher_model)
    train: TrainSettings = TrainSettings()
    augment: list[AugmentConfig] = Field(default_factory=list)
    exclude_student_subset: bool = False
    checkpoint: str | None = None


class StudentConfig(_Strict):
    """The student network, its training, its losses and its training data.

    A study trains one student per (loss, teacher kind); the one-hot student (teacher kind
    ``none``) is trained once and shown with every loss.

    ``teacher_cache`` says where the students' teacher probabilities come from during
    training (`TeacherCache`): ``auto`` (``exact`` without augmentation, ``none`` with
    it), ``exact`` (the clean training set predicted once), ``views`` (``cache_views``
    augmented views per example predicted once and stored with their augmentation
    parameters; ``cache_top_k`` keeps the k largest probabilities of each view) or
    ``none`` (the teacher asked on every batch).
    """

    model: ModelConfig = Field(default_factory=_default_student_model)
    train: TrainSettings = TrainSettings()
    losses: list[LossConfig] = Field(default_factory=lambda: [LossConfig(name="kd")], min_length=1)
    subset: SubsetConfig | None = None
    augment: list[AugmentConfig] = Field(default_factory=list)
    teacher_cache: TeacherCache = TeacherCache.AUTO
    cache_views: int = Field(DEFAULT_VIEWS, ge=1)
    cache_top_k: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _cache_fits_augmentation(self) -> StudentConfig:
        if self.teacher_cache is TeacherCache.VIEWS:
            if not self.augment:
                raise ValueError(
                    "teacher_cache 'views' stores the teacher's predictions on augmented views, "
                    "but student.augment is empty; use teacher_cache 'exact' (or 'auto'), or "
                    "give the student an augmentation"
                )
            names = [a.name for a in self.augment if a.name not in PARAMETRIC_AUGMENTATIONS]
            if names:
                raise ValueError(
                    f"teacher_cache 'views' needs augmentations whose randomness can be stored "
                    f"({', '.join(PARAMETRIC_AUGMENTATIONS)}); {names} cannot be: use "
                    "teacher_cache 'none' with them"
                )
        if self.teacher_cache is TeacherCache.EXACT and self.augment:
            raise ValueError(
                "teacher_cache 'exact' caches the teacher's predictions on the clean training "
                "set, but the student trains with augmentation; use 'views' or 'none'"
            )
        return self

    def trained_losses(self) -> list[LossConfig]:
        """The losses students are trained with: a tuned loss gives one per grid point."""
        return [candidate for loss in self.losses for candidate in loss.candidates()]

    @field_validator("losses")
    @classmethod
    def _unique_loss_labels(cls, losses: list[LossConfig]) -> list[LossConfig]:
        _check_unique([loss.key for loss in losses], "losses")
        return losses


def _default_teacher_kinds() -> list[TeacherKindConfig]:
    return [
        TeacherKindConfig(name=n)
        for n in (NO_TEACHER, "deterministic", "temperature", "laplace", "ivon")
    ]


class ExperimentConfig(_Strict):
    """A whole experiment: data, teacher network, teacher kinds, student, seeds.

    ``bayesdistill teacher`` uses data/teacher/teachers, ``distill`` uses data/student, and
    ``study`` uses everything; ``runtime`` holds speed and loading options for all of them.
    """

    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherNetworkConfig = Field(default_factory=TeacherNetworkConfig)
    teachers: list[TeacherKindConfig] = Field(default_factory=_default_teacher_kinds)
    student: StudentConfig = Field(default_factory=StudentConfig)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    device: str = "auto"
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @field_validator("teachers")
    @classmethod
    def _unique_labels(cls, kinds: list[TeacherKindConfig]) -> list[TeacherKindConfig]:
        _check_unique([k.key for k in kinds], "teacher kinds")
        return kinds

    @model_validator(mode="after")
    def _loss_teachers_exist(self) -> ExperimentConfig:
        kinds = [k.key for k in self.teachers if k.name != NO_TEACHER]
        for loss in self.student.losses:
            unknown = sorted(set(loss.teachers or ()) - set(kinds))
            if unknown:
                raise ValueError(
                    f"student loss '{loss.key}' names teacher kinds {unknown} in `teachers`, "
                    f"which the study does not have; its teacher kinds are {kinds}"
                )
        return self

    @model_validator(mode="after")
    def _training_targets(self) -> ExperimentConfig:
        if self.teacher.exclude_student_subset and self.student.subset is None:
            raise ValueError(
                "teacher.exclude_student_subset trains the teachers without the student's "
                "examples, but the student trains on the whole training set; give "
                "student.subset (per_class or fraction)"
            )
        crossed = [k.key for k in self.teachers if k.cross_fit is not None]
        if crossed and self.student.augment:
            raise ValueError(
                f"teacher kinds {crossed} are cross-fitted: their out-of-fold targets exist for "
                "the clean training examples only, but the student trains with augmentation "
                "(the teacher would answer on augmented inputs with the mean of its K teachers, "
                "which saw the example); drop student.augment or cross_fit"
            )
        return self

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        return check_device(device)


def _check_unique(keys: list[str], what: str) -> None:
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(
            f"{what} must have distinct labels; {duplicates} appear more than once "
            "(add `label: <name>` to tell them apart)"
        )


def schema_keys(model: type[BaseModel] | Any) -> list[str]:
    """The keys a config section accepts (for error messages)."""
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    fields = getattr(model, "__dataclass_fields__", None)
    return list(fields) if fields else []


__all__ = [
    "NO_TEACHER",
    "AugmentConfig",
    "DataConfig",
    "ExecutorConfig",
    "ExecutorName",
    "ExperimentConfig",
    "LogConfig",
    "LossConfig",
    "LossTermConfig",
    "ModelConfig",
    "NamedSpec",
    "RuntimeConfig",
    "StudentConfig",
    "SubsetConfig",
    "TeacherKindConfig",
    "TeacherNetworkConfig",
    "pydantic",
    "schema_keys",
]
