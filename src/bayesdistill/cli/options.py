"""The options the ``bayesdistill`` commands share: config, overrides, run folder, seed,
progress, and where a study's units run (the executor flags, turned into config overrides
of ``runtime.executor`` by `executor_overrides`, validated with the rest of the config)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigArg = Annotated[Path, typer.Argument(help="YAML config (only overrides of the defaults).")]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Overrides key.sub=value, values parsed as YAML.", show_default=False),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder of the run.")]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue a killed run in --out where it stopped.")
]


def parse_seed(text: str) -> int:
    """A seed from the command line: a whole number, or an error that repeats the text."""
    try:
        return int(text)
    except ValueError:
        raise typer.BadParameter(f"a seed is a whole number, got {text!r}") from None


SeedOpt = Annotated[
    int | None,
    typer.Option(parser=parse_seed, metavar="INT", help="Seed (default: the config's first seed)."),
]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars.")]


ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--executor",
        help="Where the study's units run: local (in this process), processes (a local pool), "
        "ray (a Ray cluster). Default: the config's runtime.executor.name (local).",
        show_default=False,
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help="Worker processes (processes) or CPUs (local Ray). Default: devices × "
        "--units-per-device where that is given, else 2.",
        show_default=False,
    ),
]
DevicesOpt = Annotated[
    str | None,
    typer.Option(
        "--devices",
        help="Devices of the workers, comma-separated (e.g. cuda:0,cuda:1 or cpu); worker i "
        "runs on the (i mod n)-th.",
        show_default=False,
    ),
]
UnitsPerDeviceOpt = Annotated[
    int | None,
    typer.Option(
        "--units-per-device",
        help="processes: K workers on each device of --devices, so K units share a GPU "
        "(cuda:0,cuda:1 with 4: 8 workers). --workers, if given too, must equal devices × K. "
        "On CUDA a unit starts beside others only where the memory it needs is free.",
        show_default=False,
    ),
]
GpusPerUnitOpt = Annotated[
    float | None,
    typer.Option(
        "--gpus-per-unit",
        help="ray: the share of a GPU each unit asks for, in (0, 1] (0.25: four units per "
        "GPU). Default: 1 on CUDA.",
        show_default=False,
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="A running Ray cluster to join (ray.init(address=...)).",
        show_default=False,
    ),
]


def executor_overrides(
    executor: str | None,
    workers: int | None,
    devices: str | None,
    address: str | None,
    units_per_device: int | None = None,
    gpus_per_unit: float | None = None,
) -> list[str]:
    """The executor flags as config overrides of runtime.executor (validated there).
    --units-per-device sizes the pool itself: without --workers it clears a ``workers``
    count from the config file."""
    from bayesdistill.devices import parse_devices

    out = []
    if executor is not None:
        out.append(f"runtime.executor.name={executor}")
    if workers is not None:
        out.append(f"runtime.executor.workers={workers}")
    elif units_per_device is not None:
        out.append("runtime.executor.workers=null")
    if devices is not None:
        out.append(f"runtime.executor.devices=[{', '.join(parse_devices(devices))}]")
    if units_per_device is not None:
        out.append(f"runtime.executor.units_per_device={units_per_device}")
    if gpus_per_unit is not None:
        out.append(f"runtime.executor.gpus_per_unit={gpus_per_unit!r}")
    if address is not None:
        out.append(f"runtime.executor.address={address}")
    return out
