"""Shared pieces of the config schema: strict sections and registry-named components."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    model_validator,
)

from bayesdistill.registry import Registry


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
