"""Reading configs: YAML (``safe_load`` only), ``key.sub=value`` overrides, clear errors."""

from __future__ import annotations

import copy
import typing
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pydantic
import yaml

from bayesdistill.config.schema import ExperimentConfig, schema_keys
from bayesdistill.errors import ConfigError, did_you_mean
from bayesdistill.io import write_text


def resolve_config_path(source: str | Path) -> Path:
    """``source`` if it is a file; else, for ``configs/<path>``, the config of that name
    shipped with the package (so the documented commands work outside the repository)."""
    path = Path(source)
    if path.is_file():
        return path
    parts = path.parts
    if len(parts) > 1 and parts[0] == "configs":
        shipped = Path(str(resources.files("bayesdistill") / "configs")).joinpath(*parts[1:])
        if shipped.is_file():
            return shipped
    raise FileNotFoundError(
        f"config file not found: '{path}' (`bayesdistill list configs` shows the shipped ones)"
    )


def load_config(
    source: str | Path | Mapping[str, Any] | None = None, overrides: Sequence[str] = ()
) -> ExperimentConfig:
    """Validate a config file (or mapping) with overrides applied, into `ExperimentConfig`.

    Args:
        source: a YAML file, a mapping, or None for all defaults.
        overrides: ``"key.sub=value"`` strings; values are parsed as YAML
            (``student.train.lr=0.1``, ``seeds=[0,1]``, ``teachers.3.prior_precision=marglik``).

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: bad YAML, an unknown key, a wrong type or value (the message names it,
            what was given and what is allowed).
    """
    where = "config"
    if source is None:
        raw: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        raw = copy.deepcopy(dict(source))
    else:
        path = resolve_config_path(source)
        where = f"config '{path}'"
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where} is not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{where} must be a mapping of keys to values, got {type(loaded).__name__}"
            )
        raw = loaded
    raw = merge_onto_defaults(raw)
    for item in overrides:
        apply_override(raw, item)
    try:
        return ExperimentConfig.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None


def merge_onto_defaults(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The default config as a plain dict with ``raw`` merged in.

    Sections merge key by key; lists are replaced whole; a component section
    (``{name: ..., options}``) whose ``name`` changes drops the default's options, which
    belong to the other component.
    """
    defaults = ExperimentConfig().model_dump(mode="json")
    return _merge(defaults, dict(raw))


def _merge(default: Any, given: Any) -> Any:
    if not isinstance(default, dict) or not isinstance(given, dict):
        return copy.deepcopy(given)
    if "name" in default and "name" in given and given["name"] != default["name"]:
        return copy.deepcopy(given)
    merged = copy.deepcopy(default)
    for key, value in given.items():
        merged[key] = _merge(default.get(key), value) if key in default else copy.deepcopy(value)
    return merged


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``raw[a][b]... = value`` from ``"a.b=value"`` (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key.sub=value")
    key, _, text = item.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override '{item}' has an empty key")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{item}': value is not valid YAML ({exc})") from None
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"override '{item}': '{'.'.join(parts[:i])}' is a list of {len(node)}; "
                    f"'{part}' is not an index in [0, {len(node)})"
                )
            index = int(part)
            if last:
                node[index] = value
            else:
                if isinstance(node[index], str):  # shorthand "laplace" → {name: laplace}
                    node[index] = {"name": node[index]}
                node = node[index]
        else:
            if last:
                if part == "name" and isinstance(node.get("name"), str) and node["name"] != value:
                    # another component: drop the old one's options, keep the fixed fields
                    fixed = set(_allowed_keys(parts[:-1]))
                    for stale in [k for k in node if k not in fixed]:
                        del node[stale]
                node[part] = value
            else:
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
                elif isinstance(child, str):  # shorthand "kd" → {name: kd}
                    child = node[part] = {"name": child}
                elif not isinstance(child, (dict, list)):
                    raise ConfigError(
                        f"override '{item}': '{'.'.join(parts[: i + 1])}' is a value "
                        f"({child!r}), not a section"
                    )
                node = child


def format_validation_error(exc: pydantic.ValidationError, where: str = "config") -> str:
    """One line per problem: the key path, what was given and what is allowed."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        path = ".".join(loc) or "(top level)"
        kind = err["type"]
        if kind in ("extra_forbidden", "unexpected_keyword_argument"):
            allowed = _allowed_keys(loc[:-1])
            lines.append(
                f"unknown key '{path}'; allowed keys here: {', '.join(allowed)}."
                + did_you_mean(loc[-1], allowed)
            )
            continue
        message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if kind == "value_error" or kind.startswith("assertion"):
            lines.append(f"{path}: {message}")
        else:
            lines.append(f"{path}: {message} (given {err.get('input')!r})")
    return f"{where} is invalid:\n  " + "\n  ".join(lines)


def _allowed_keys(loc: list[str]) -> list[str]:
    """Walk the schema along ``loc`` (skipping list indices) and list the keys there."""
    node: Any = ExperimentConfig
    for part in loc:
        if part.isdigit():
            continue
        fields = getattr(node, "model_fields", None) or getattr(node, "__dataclass_fields__", {})
        field = fields.get(part)
        if field is None:
            return []
        node = _unwrap(field.annotation if hasattr(field, "annotation") else field.type)
    return schema_keys(node)


def _unwrap(annotation: Any) -> Any:
    """The model class inside ``X | None`` or ``list[X]``."""
    for arg in typing.get_args(annotation) or (annotation,):
        inner = typing.get_args(arg)
        candidate = inner[0] if inner else arg
        if isinstance(candidate, type) and (
            hasattr(candidate, "model_fields") or hasattr(candidate, "__dataclass_fields__")
        ):
            return candidate
    return annotation


def dump_config(config: ExperimentConfig) -> str:
    """The resolved config (defaults filled in) as YAML: a run is reproducible from it."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    write_text(path, dump_config(config))
