"""Text listing of every registry, for ``bayesdistill list``."""

from __future__ import annotations

from bayesdistill.errors import ConfigError, did_you_mean


def registries() -> dict[str, object]:
    from bayesdistill.data import AUGMENTATIONS, DATASETS
    from bayesdistill.losses import LOSSES
    from bayesdistill.models import MODELS
    from bayesdistill.teachers import TEACHERS

    return {
        "datasets": DATASETS,
        "models": MODELS,
        "teachers": TEACHERS,
        "losses": LOSSES,
        "augmentations": AUGMENTATIONS,
    }


def render_registries(kind: str | None = None) -> str:
    regs = registries()
    if kind is not None and kind not in regs:
        raise ConfigError(
            f"unknown kind '{kind}'; choose one of {', '.join(regs)}." + did_you_mean(kind, regs)
        )
    lines = []
    for name, registry in regs.items():
        if kind is not None and name != kind:
            continue
        lines.append(f"{name}:")
        for entry_name, summary, options in registry.describe():  # type: ignore[attr-defined]
            lines.append(f"  {entry_name:<14} {summary}")
            for option in options:
                lines.append(f"  {'':<14}   {option}")
        if name == "teachers":
            lines.append(
                f"  {'none':<14} (study only) the one-hot baseline: the student without a teacher"
            )
        lines.append("")
    return "\n".join(lines)
