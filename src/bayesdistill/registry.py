"""One generic registry for models, datasets, teachers and losses.

A registry maps a name to a callable. The callable's *keyword-only* parameters are its
options: they are what a config may set, they are listed by ``bayesdistill list``, and they
are validated (type and name) before the callable is called. Positional parameters are the
runtime inputs the library supplies itself (a network, the data, the logits); keyword-only
parameters named in the ``runtime`` tag (e.g. ``runtime=("epoch",)`` for a loss that warms
up) are runtime inputs too, supplied by the library, never options.

    >>> from bayesdistill.registry import Registry
    >>> SCALERS = Registry("scaler")
    >>> @SCALERS.register("double")
    ... def double(x: float, *, factor: float = 2.0) -> float:
    ...     '''Multiply by a factor.'''
    ...     return factor * x
    >>> SCALERS.build("double", 3.0, factor=3)
    9.0
"""

from __future__ import annotations

import enum
import inspect
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pydantic

from bayesdistill.errors import ConfigError, UnknownNameError, did_you_mean

T = TypeVar("T", bound=Callable[..., Any])


@dataclass(frozen=True)
class Range:
    """The values a numeric option may take, declared with the option itself:
    ``alpha: Annotated[float, Range(0, 1)] = 0.5``, ``temperature: Annotated[float,
    Range(0, low_open=True)] = 4.0`` (positive). For a sequence every element must lie in
    it. `Registry.validate_options` refuses a value outside it (configs are checked so
    before anything runs); `check` does the same for a direct call."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: object) -> bool:
        if isinstance(value, (list, tuple)):
            return all(v in self for v in value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True  # not a number: the type check speaks to it
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return bool(above and below)

    def interval(self) -> str:
        """``[0, 1]``, ``(0, inf)``, ``[0, inf)``."""
        left = "(" if self.low_open or self.low == -math.inf else "["
        right = ")" if self.high_open or self.high == math.inf else "]"
        return f"{left}{_number(self.low)}, {_number(self.high)}{right}"

    def describe(self) -> str:
        """``must lie in [0, 1]``, with ``(positive)``/``(non-negative)`` where it helps."""
        words = ""
        if self.low == 0 and self.high == math.inf:
            words = " (positive)" if self.low_open else " (non-negative)"
        return f"must lie in {self.interval()}{words}"

    def check(self, name: str, value: object, where: str) -> None:
        """Raise `ConfigError` naming ``where``, the option, its range and the value when
        ``value`` is outside this range."""
        if isinstance(value, float) and math.isnan(value):
            raise ConfigError(f"{where}: option '{name}' is NaN; it {self.describe()}")
        if value not in self:
            raise ConfigError(f"{where}: {name} {self.describe()}, got {value!r}")


def _number(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:g}"


@dataclass(frozen=True)
class Option:
    """One keyword-only option of a registered callable (``range``: its declared `Range`)."""

    name: str
    annotation: Any
    default: Any = inspect.Parameter.empty
    range: Range | None = None

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def describe(self) -> str:
        type_name = _type_name(self.annotation)
        if self.range is not None:
            type_name += f" in {self.range.interval()}"
        if self.required:
            return f"{self.name}: {type_name} (required)"
        default = self.default.value if isinstance(self.default, enum.Enum) else self.default
        return f"{self.name}: {type_name} = {default!r}"


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered callable with its name, summary and options."""

    name: str
    obj: T
    summary: str
    options: tuple[Option, ...]
    tags: Mapping[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Names → callables of one kind (``"loss"``, ``"model"``, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str | None = None, **tags: Any) -> Callable[[T], T]:
        """Decorator that registers a function or class under ``name`` (default: its own).

        ``tags`` are free-form metadata (e.g. ``needs_teacher=False`` for a loss). The tag
        ``runtime`` (a tuple of names) marks keyword-only parameters that the library
        supplies at call time; they are not options. The tag ``summary`` replaces the
        one-line description taken from the docstring (one callable under two names).
        """
        summary = tags.pop("summary", None)

        def decorator(obj: T) -> T:
            key = name or obj.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} '{key}' is already registered")
            runtime = tuple(tags.get("runtime", ()))
            options = _options(obj, exclude=runtime)
            missing = set(runtime) - {p.name for p in _keyword_only(obj)}
            if missing:
                raise ValueError(
                    f"{self.kind} '{key}': runtime inputs {sorted(missing)} are not keyword-only "
                    "parameters of it"
                )
            self._entries[key] = Entry(key, obj, summary or _summary(obj), options, dict(tags))
            return obj

        return decorator

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str) -> Entry[T]:
        """The entry for ``name``; an unknown name lists the valid ones and the closest."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'; valid {self.kind} names: {', '.join(self.names())}."
                + did_you_mean(str(name), self._entries)
            ) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def validate_options(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``options`` against the keyword-only parameters of ``name``.

        Returns the options with values coerced to the annotated types (``"0.5"`` stays an
        error, ``1`` becomes ``1.0`` for a float). Raises `ConfigError` naming the
        offending option, what was given and what is allowed.
        """
        entry = self.entry(name)
        allowed = {opt.name: opt for opt in entry.options}
        for key in options:
            if key not in allowed:
                listing = ", ".join(o.describe() for o in entry.options) or "none"
                raise ConfigError(
                    f"{self.kind} '{name}' has no option '{key}'; its options are: {listing}."
                    + did_you_mean(key, allowed)
                )
        model = _options_model(self.kind, entry)
        try:
            validated = model.model_validate(dict(options))
        except pydantic.ValidationError as exc:
            # a union type reports one error per member: keep the first per option
            first: dict[str, Any] = {}
            for err in exc.errors():
                first.setdefault(str(err["loc"][0]) if err["loc"] else "?", err)
            problems = "; ".join(_describe_problem(err, allowed) for err in first.values())
            raise ConfigError(f"{self.kind} '{name}': {problems}") from None
        values = {key: getattr(validated, key) for key in options}
        check_ranges(entry.options, values, f"{self.kind} '{name}'")
        return values

    def build(self, name: str, *args: Any, **options: Any) -> Any:
        """Validate ``options`` and call the entry with ``args`` and the options."""
        return self.get(name)(*args, **self.validate_options(name, options))

    def describe(self) -> list[tuple[str, str, list[str]]]:
        """(name, summary, option descriptions) for every entry, sorted by name."""
        return [
            (e.name, e.summary, [o.describe() for o in e.options])
            for e in (self._entries[n] for n in self.names())
        ]


def check_ranges(options: tuple[Option, ...], values: Mapping[str, Any], where: str) -> None:
    """Raise `ConfigError` for the first of ``values`` outside its option's `Range`."""
    for option in options:
        if option.range is not None and option.name in values:
            option.range.check(option.name, values[option.name], where)


def _describe_problem(err: Any, allowed: Mapping[str, Option]) -> str:
    key = str(err["loc"][0]) if err["loc"] else "?"
    expected = _type_name(allowed[key].annotation) if key in allowed else "?"
    if err["type"] == "missing":
        return f"option '{key}' is required ({expected})"
    return f"option '{key}': {err['msg']} (given {err.get('input')!r}, expected {expected})"


_MODEL_CACHE: dict[tuple[str, str], type[pydantic.BaseModel]] = {}


def _options_model(kind: str, entry: Entry[Any]) -> type[pydantic.BaseModel]:
    key = (kind, entry.name)
    if key not in _MODEL_CACHE:
        fields: dict[str, Any] = {
            opt.name: (opt.annotation, ... if opt.required else opt.default)
            for opt in entry.options
        }
        _MODEL_CACHE[key] = pydantic.create_model(
            f"{kind}_{entry.name}_options",
            __config__=pydantic.ConfigDict(
                extra="forbid", arbitrary_types_allowed=True, strict=False
            ),
            **fields,
        )
    return _MODEL_CACHE[key]


def _signature_target(obj: Callable[..., Any]) -> Callable[..., Any]:
    return obj.__init__ if inspect.isclass(obj) else obj  # type: ignore[misc]


def _keyword_only(obj: Callable[..., Any]) -> list[inspect.Parameter]:
    return [
        p
        for p in inspect.signature(_signature_target(obj)).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]


def _options(obj: Callable[..., Any], exclude: tuple[str, ...] = ()) -> tuple[Option, ...]:
    hints = typing.get_type_hints(_signature_target(obj), include_extras=True)
    options = []
    for p in _keyword_only(obj):
        if p.name not in exclude:
            annotation, declared = _split_range(hints.get(p.name, Any))
            options.append(Option(p.name, annotation, p.default, declared))
    return tuple(options)


def declared_ranges(obj: Callable[..., Any]) -> dict[str, Range]:
    """The `Range` each keyword-only option of ``obj`` declares (by option name)."""
    return {o.name: o.range for o in _options(obj) if o.range is not None}


def _split_range(annotation: Any) -> tuple[Any, Range | None]:
    """``Annotated[T, Range(...)]`` → ``(T, the range)``; other annotations unchanged."""
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        ranges = [e for e in extras if isinstance(e, Range)]
        if ranges:
            others = [e for e in extras if not isinstance(e, Range)]
            kept = typing.Annotated[(base, *others)] if others else base
            return kept, ranges[0]
    return annotation, None


def _summary(obj: Callable[..., Any]) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _type_name(annotation: Any) -> str:
    """A short human-readable type: ``float``, ``int | None``, ``one of {'a', 'b'}``."""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "{" + ", ".join(repr(m.value) for m in annotation) + "}"
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "{" + ", ".join(repr(a) for a in typing.get_args(annotation)) + "}"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and origin is None:
        return annotation.__name__
    return str(annotation).replace("typing.", "")
