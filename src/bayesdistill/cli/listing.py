"""Text listing of every registry, for ``bayesdistill list``."""

from __future__ import annotations

from pathlib import Path

from bayesdistill.errors import ConfigError, did_you_mean

NAME_WIDTH = 14
"""Minimum width of the name column."""


def registries() -> dict[str, object]:
    from bayesdistill.data import AUGMENTATIONS, DATASETS
    from bayesdistill.losses import FEATURE_LOSSES, LOSSES
    from bayesdistill.models import MODELS
    from bayesdistill.teachers import TEACHERS
    from bayesdistill.theory.runner import EXPERIMENTS

    return {
        "datasets": DATASETS,
        "models": MODELS,
        "teachers": TEACHERS,
        "losses": LOSSES,
        "feature_losses": FEATURE_LOSSES,
        "augmentations": AUGMENTATIONS,
        "theory": EXPERIMENTS,
    }


def shipped_configs() -> list[str]:
    """The configs shipped with the package, as ``configs/<path>`` (study configs first)."""
    from importlib import resources

    root = resources.files("bayesdistill") / "configs"
    paths = sorted(
        str(p.relative_to(root))  # type: ignore[attr-defined]
        for p in Path(str(root)).rglob("*.yaml")
    )
    return [f"configs/{p}" for p in sorted(paths, key=lambda p: (p.startswith("theory/"), p))]


def render_registries(kind: str | None = None) -> str:
    regs = registries()
    kinds = (*regs, "configs")
    if kind is not None and kind not in kinds:
        raise ConfigError(
            f"unknown kind '{kind}'; choose one of {', '.join(kinds)}." + did_you_mean(kind, kinds)
        )
    lines = []
    for name, registry in regs.items():
        if kind is not None and name != kind:
            continue
        lines.append(f"{name}:")
        entries = registry.describe()  # type: ignore[attr-defined]
        width = max([NAME_WIDTH, *(len(entry_name) for entry_name, _, _ in entries)])
        for entry_name, summary, options in entries:
            lines.append(f"  {entry_name:<{width}} {summary}")
            for option in options:
                lines.append(f"  {'':<{width}}   {option}")
        if name == "feature_losses":
            lines.append(
                f"  {'':<{width}} (student features vs the teacher network's; use as terms of a "
                "weighted-sum loss, e.g. {label: ce_w2, terms: [{name: onehot_ce}, "
                "{name: w2_empirical, weight: 1.0e-4}]})"
            )
        if name == "teachers":
            lines.append(
                f"  {'none':<{width}} (study only) the one-hot baseline: the student without a teacher"
            )
        lines.append("")
    if kind in (None, "configs"):
        lines.append("configs (bayesdistill study CONFIG; theory/*: bayesdistill theory NAME):")
        lines += [f"  {path}" for path in shipped_configs()]
        lines.append("")
    return "\n".join(lines)
