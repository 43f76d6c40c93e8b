"""The typed config schema. YAML files hold only overrides of these defaults.

Components picked from a registry (dataset, model, loss, teacher kind, augmentation) are
written as ``{name: <registered name>, <option>: <value>, ...}``; their options are the
keyword-only parameters of the registered callable, validated by the registry. A student
loss may instead be a weighted sum ``{label: ..., terms: [{name, weight, <options>}, ...]}``
(`LossConfig`). Everything else is a fixed, typed field; unknown keys are errors.
"""

from __future__ import annotations

import itertools
import math
from enum import Enum
from typing import Any, ClassVar

import pydantic
import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_serializer,
    model_validator,
)

from bayesdistill.data import AUGMENTATIONS, DATASETS, LoaderOptions, Standardization
from bayesdistill.errors import did_you_mean
from bayesdistill.losses import LOSSES, loss_kind
from bayesdistill.losses.feature import FEATURE_LOSSES
from bayesdistill.models import MODELS
from bayesdistill.registry import Registry
from bayesdistill.teachers import TEACHERS, learns_from_data
from bayesdistill.teachers.cross_fit import CrossFitPredictor, check_folds
from bayesdistill.train.accel import Acceleration, Precision
from bayesdistill.train.objective import LossTerm, check_combination, check_term
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def check_finite_options(registry: Registry, name: str, options: dict[str, Any]) -> None:
    """Refuse NaN in any option of ``name``, and ±inf unless the option's default is
    infinite itself (``beta: .inf`` of ``w2_joint``, ``clip_radius`` of IVON mean "no
    limit"); YAML reads ``.inf`` and ``.nan`` as numbers, which no range check catches."""
    defaults = {opt.name: opt.default for opt in registry.entry(name).options}
    for key, value in options.items():
        for number in _numbers(value):
            if math.isnan(number):
                raise ValueError(f"{registry.kind} '{name}': option '{key}' is NaN; give a number")
            default = defaults.get(key)
            if math.isinf(number) and not (isinstance(default, float) and math.isinf(default)):
                raise ValueError(
                    f"{registry.kind} '{name}': option '{key}' must be finite, got {number}"
                )


def _numbers(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, (list, tuple)):
        return [n for item in value for n in _numbers(item)]
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    return []


class NamedSpec(BaseModel):
    """``name`` of a registered component plus its options (the other keys)."""

    model_config = ConfigDict(extra="allow")
    registry: ClassVar[Registry]
    reserved: ClassVar[tuple[str, ...]] = ()

    name: str

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        """A bare string ``"kd"`` is shorthand for ``{name: kd}``."""
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _validate_options(self) -> NamedSpec:
        options = {k: v for k, v in (self.model_extra or {}).items()}
        if self.name not in self.reserved:
            validated = self.registry.validate_options(self.name, options)
            check_finite_options(self.registry, self.name, validated)
            for key, value in validated.items():
                self.__pydantic_extra__[key] = value  # type: ignore[index]
        elif options:
            raise ValueError(f"'{self.name}' takes no options, got {sorted(options)}")
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The component's options (every key but ``name`` and the fixed fields)."""
        return dict(self.model_extra or {})


class ModelConfig(NamedSpec):
    """A network from the model registry (``bayesdistill list`` shows the options)."""

    registry = MODELS


class LossTermConfig(BaseModel):
    """One term ``weight · loss`` of a composite loss: ``{name, weight, label, <options>}``.

    ``name`` is a loss of the loss registry (on logits) or of the feature-loss registry (on
    penultimate features); the other keys are its options, validated by that registry.
    ``label`` names the term in the logs (``train_loss/<label>``; default: the name). A
    bare string ``"onehot_ce"`` is shorthand for ``{name: onehot_ce}``.
    """

    model_config = ConfigDict(extra="allow")

    name: str
    weight: float = Field(1.0, ge=0.0, allow_inf_nan=False)
    label: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _validate_options(self) -> LossTermConfig:
        checked = check_term(LossTerm(self.name, self.weight, self.options, self.label))
        registry = LOSSES if loss_kind(self.name) == "response" else FEATURE_LOSSES
        check_finite_options(registry, self.name, checked.options)
        for key, value in checked.options.items():
            self.__pydantic_extra__[key] = value  # type: ignore[index]
        return self

    @property
    def key(self) -> str:
        return self.label or self.name

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def to_term(self) -> LossTerm:
        return LossTerm(self.name, self.weight, self.options, self.label)


class SelectBy(str, Enum):
    """The validation metric that picks a tuned loss's grid point per teacher kind."""

    VAL_ACCURACY = "val_accuracy"
    """Highest mean validation accuracy over seeds."""
    VAL_NLL = "val_nll"
    """Lowest mean validation NLL over seeds."""


def _plain(value: Any) -> str:
    """A grid value as written in a candidate's label (4.0 → 4, 0.5 → 0.5)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class LossConfig(BaseModel):
    """A student loss: one registered loss, or a weighted sum of named terms.

    Single form ``{name: kd, label: kd_T4, alpha: 0.9, temperature: 4.0}``: a loss of the
    loss registry with its hyper-parameters. Composite form ``{label: kd_w2, terms:
    [{name: kd, alpha: 0.9}, {name: w2_empirical, weight: 1.0e-4}]}``: the objective
    ``Σ_i weight_i · term_i`` (see `LossTermConfig`), whose terms are logged one by one.

    ``label`` names the loss in results and folders (default: the name, or the term labels
    joined by ``+``), so one study can compare, e.g., KD at T = 1 and at T = 4. A bare
    string ``"kd"`` is shorthand for ``{name: kd}``.

    ``teachers`` (optional) restricts the loss to these teacher-kind labels; by default a
    study trains one student per (loss, teacher kind). It lets one study give each teacher
    kind its own hyper-parameters, e.g. the paper's KD (α, T) = (0.5, 4) for the
    deterministic teacher and (1.0, 2) for the Laplace teacher.

    ``tune`` (optional, single losses) is a grid over the loss's options, e.g. ``{alpha:
    [0.5, 0.9], temperature: [1, 2, 4, 8]}``: the study trains one student per grid point
    (`candidates`) and, for each teacher kind, reports the grid point with the best mean
    validation metric over seeds (``select_by``: ``val_accuracy``, highest, or
    ``val_nll``, lowest), so every teacher kind is compared at its own best setting,
    chosen without the test set.
    """

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    label: str | None = None
    terms: list[LossTermConfig] | None = Field(None, min_length=1)
    teachers: list[str] | None = Field(None, min_length=1)
    tune: dict[str, list[Any]] | None = None
    select_by: SelectBy = SelectBy.VAL_ACCURACY
    _tuned_from: str | None = PrivateAttr(None)
    _tuned_values: dict[str, Any] | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _validate(self) -> LossConfig:
        options = self.options
        if self.terms is None:
            if self.name is None:
                raise ValueError(
                    "a loss needs a `name` (e.g. {name: kd}) or `terms` (e.g. {label: kd_w2, "
                    "terms: [{name: kd}, {name: w2_empirical, weight: 1.0e-4}]})"
                )
            if loss_kind(self.name) == "feature":
                check_combination([self.name], [self.name])  # explains what to add
            validated = LOSSES.validate_options(self.name, options)
            check_finite_options(LOSSES, self.name, validated)
            for key, value in validated.items():
                self.__pydantic_extra__[key] = value  # type: ignore[index]
            if self.tune is not None:
                self._check_tune(validated)
            return self
        if self.tune is not None:
            raise ValueError(
                "tune applies to a single loss ({name: kd, tune: {temperature: [1, 4]}}); a "
                "composite loss cannot be tuned"
            )
        if self.name is not None:
            raise ValueError(
                f"give either `name` ('{self.name}') or `terms`, not both; a composite loss "
                "names each of its terms"
            )
        if options:
            raise ValueError(
                f"a composite loss takes options per term; move {sorted(options)} into the "
                "terms they belong to"
            )
        check_combination([t.key for t in self.terms], [t.name for t in self.terms])
        if self.label is None:
            self.label = "+".join(t.key for t in self.terms)
        return self

    def _check_tune(self, fixed: dict[str, Any]) -> None:
        allowed = [o.name for o in LOSSES.entry(self.name).options]  # type: ignore[arg-type]
        if not self.tune:
            raise ValueError("tune needs at least one option with a list of values")
        for option, values in self.tune.items():
            if option not in allowed:
                raise ValueError(
                    f"tune: loss '{self.name}' has no option '{option}'; its options are "
                    f"{allowed}{did_you_mean(option, allowed)}"
                )
            if not isinstance(values, list) or not values:
                raise ValueError(
                    f"tune.{option} must be a non-empty list of values, got {values!r}"
                )
            if len(set(map(repr, values))) != len(values):
                raise ValueError(f"tune.{option} lists a value twice: {values}")
            if option in (self.model_extra or {}):
                raise ValueError(
                    f"'{option}' is both set ({fixed[option]}) and tuned ({values}); give one"
                )
        for point in self.grid():
            checked = LOSSES.validate_options(self.name, {**fixed, **point})  # type: ignore[arg-type]
            check_finite_options(LOSSES, self.name, checked)  # type: ignore[arg-type]

    def grid(self) -> list[dict[str, Any]]:
        """The grid points of ``tune`` (option → value), in the order written."""
        if not self.tune:
            return []
        keys = list(self.tune)
        return [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*self.tune.values())
        ]

    def candidates(self) -> list[LossConfig]:
        """One loss per grid point of ``tune``, labelled ``<label>@opt=value,...`` (itself
        when untuned). Each knows the loss it was tuned from and its grid point."""
        if self.tune is None:
            return [self]
        out = []
        for point in self.grid():
            values = ",".join(f"{k}={_plain(v)}" for k, v in point.items())
            candidate = LossConfig(
                name=self.name,
                label=f"{self.key}@{values}",
                teachers=self.teachers,
                **{**self.options, **point},
            )
            candidate._tuned_from = self.key
            candidate._tuned_values = {k: candidate.options[k] for k in point}
            out.append(candidate)
        return out

    @property
    def tuned_from(self) -> str | None:
        """The tuned loss this candidate belongs to (None for a loss as written)."""
        return self._tuned_from

    @property
    def tuned_values(self) -> dict[str, Any] | None:
        """This candidate's grid point (None for a loss as written)."""
        return self._tuned_values

    @model_serializer(mode="wrap")
    def _dump(self, handler: pydantic.SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave ``terms`` out of a single loss (a composite keeps ``name: null``, which
        readers of saved configs may look up), and untuned losses' tuning keys."""
        data = handler(self)
        for key in ("terms", "teachers", "tune"):
            if key in data and data[key] is None:
                del data[key]
        if self.tune is None:
            data.pop("select_by", None)
        return data

    @property
    def key(self) -> str:
        return self.label or self.name or ""

    @property
    def options(self) -> dict[str, Any]:
        """The single loss's options (empty for a composite: its terms hold them)."""
        return dict(self.model_extra or {})

    @property
    def is_composite(self) -> bool:
        return self.terms is not None

    def applies_to(self, teacher_label: str) -> bool:
        """Whether a study distils a student with this loss from that teacher kind."""
        return self.teachers is None or teacher_label in self.teachers

    def spec(self) -> str | list[LossTerm]:
        """What `bayesdistill.train.distill` takes as ``loss``: the name, or the terms."""
        if self.terms is None:
            return self.name  # type: ignore[return-value]
        return [t.to_term() for t in self.terms]


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


class ExecutorName(str, Enum):
    """Where a study's units run (`bayesdistill.runner.executors`)."""

    LOCAL = "local"
    """In the calling process, one after the other."""
    PROCESSES = "processes"
    """A pool of ``workers`` processes on this machine, each on a device from ``devices``."""
    RAY = "ray"
    """Ray tasks on a running cluster (``address``) or a local one (``workers`` CPUs)."""


class ExecutorConfig(_Strict):
    """How a study's units are executed. It changes where they run, not their results, so
    it is not part of a run's identity: a study may be resumed with another executor."""

    name: ExecutorName = ExecutorName.LOCAL
    workers: int = Field(2, ge=1)
    devices: list[str] = Field(default_factory=lambda: ["auto"], min_length=1)
    threads: int | None = Field(None, ge=1)
    """CPU threads per worker (default: the machine's CPUs divided among the workers)."""
    address: str | None = None
    """A Ray cluster to join (``ray.init(address=...)``); None starts a local one."""

    @field_validator("devices")
    @classmethod
    def _known_devices(cls, devices: list[str]) -> list[str]:
        for device in devices:
            if device != "auto" and device.split(":")[0] not in ("cpu", "cuda", "mps"):
                raise ValueError(
                    f"executor devices must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got "
                    f"'{device}'"
                )
        return devices


class RuntimeConfig(_Strict):
    """How networks run, not what they learn: speed options, data loading, executors.

    The GPU fast path (`Acceleration`), opt-in: ``precision`` (fp32 | bf16 | fp16: autocast
    of every forward pass, student's and teacher's, with a GradScaler for fp16, which needs
    CUDA), ``channels_last``, ``cudnn_benchmark``, ``compile`` (torch.compile) and, for runs
    under torchrun, ``sync_batchnorm``. Data read through a DataLoader (streamed datasets)
    uses ``num_workers`` worker processes and ``pin_memory``. ``executor`` says where a
    study's units run.
    """

    precision: Precision = Precision.FP32
    channels_last: bool = False
    cudnn_benchmark: bool = False
    compile: bool = False
    sync_batchnorm: bool = False
    num_workers: int = Field(0, ge=0)
    pin_memory: bool = True
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    def loader_options(self) -> LoaderOptions:
        return LoaderOptions(num_workers=self.num_workers, pin_memory=self.pin_memory)

    def acceleration(self) -> Acceleration:
        return Acceleration(
            precision=self.precision,
            channels_last=self.channels_last,
            cudnn_benchmark=self.cudnn_benchmark,
            compile=self.compile,
            sync_batchnorm=self.sync_batchnorm,
        )


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
        allowed = f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got '{device}'"
        if device == "auto":
            return device
        if device.split(":")[0] not in ("cpu", "cuda", "mps"):
            raise ValueError(allowed)
        try:
            torch.device(device)
        except RuntimeError:
            raise ValueError(allowed) from None
        return device


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
