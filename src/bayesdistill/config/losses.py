"""Student losses in a config: one registered loss, a weighted sum of terms, a tuned grid."""

from __future__ import annotations

import itertools
from enum import Enum
from typing import Any

import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    model_serializer,
    model_validator,
)

from bayesdistill.config.specs import check_finite_options
from bayesdistill.errors import did_you_mean
from bayesdistill.losses import LOSSES, loss_kind
from bayesdistill.losses.feature import FEATURE_LOSSES
from bayesdistill.train.objective import LossTerm, check_combination, check_term


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
