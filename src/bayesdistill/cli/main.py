"""The ``bayesdistill`` command line.

Every command that takes a CONFIG also takes ``key.sub=value`` overrides after it, e.g.
``bayesdistill study configs/quickstart.yaml --out runs/q seeds=[0,1] student.train.epochs=5``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from bayesdistill import __version__
from bayesdistill.cli.errors import is_out_of_memory, os_error_message
from bayesdistill.cli.options import (
    AddressOpt,
    ConfigArg,
    DevicesOpt,
    ExecutorOpt,
    GpusPerUnitOpt,
    OutOpt,
    OverridesArg,
    ProgressOpt,
    ResumeOpt,
    SeedOpt,
    UnitsPerDeviceOpt,
    WorkersOpt,
    executor_overrides,
)
from bayesdistill.errors import BayesDistillError

app = typer.Typer(
    name="bayesdistill",
    help="Knowledge distillation from Bayesian teachers: fit teachers, distil students, "
    "compare them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

QUICKSTART = "quickstart.yaml"


def _usage_error_types() -> tuple[type[Exception], ...]:
    """The command-line parser's usage-error classes (they know how to show themselves).

    Typer ≥ 0.26 carries its own copy of click (``typer.TyperException``) and does not
    install click; older Typer raises ``click.ClickException``. Catch whichever exists,
    never importing click unless it is there.
    """
    types: list[type[Exception]] = []
    if hasattr(typer, "TyperException"):
        types.append(typer.TyperException)
    try:
        import click
    except ImportError:
        pass
    else:
        types.append(click.ClickException)
    return tuple(types)


USAGE_ERRORS = _usage_error_types()


def _configure_logging(quiet: bool) -> None:
    """Our own logger to stderr; third-party loggers stay at their defaults. Ranks ≠ 0 of
    a distributed run log warnings and errors only (rank 0 reports progress)."""
    from bayesdistill.io import is_writer

    logger = logging.getLogger("bayesdistill")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet or not is_writer() else logging.INFO)
    logger.propagate = False


def _echo(message: str = "", **kwargs: Any) -> None:
    """Print a result (on rank 0 only, in a distributed run)."""
    from bayesdistill.io import is_writer

    if is_writer():
        typer.echo(message, **kwargs)


def _join_torchrun() -> None:
    from bayesdistill.train.distributed import init_from_env, launched_by_torchrun

    if launched_by_torchrun():
        init_from_env()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bayesdistill {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Show a failed unit's traceback on the console too (it is always in the "
            "unit's log, logs/<unit>.log in the run folder).",
        ),
    ] = False,
) -> None:
    if debug:  # an environment variable: the worker processes of a study inherit it
        from bayesdistill.runner.graph import DEBUG_VARIABLE

        os.environ[DEBUG_VARIABLE] = "1"
    _configure_logging(quiet)


def _load(config: Path, overrides: list[str] | None):
    from bayesdistill.config import load_config

    return load_config(config, overrides or [])


@app.command()
def teacher(
    config: ConfigArg,
    overrides: OverridesArg = None,
    out: OutOpt = Path("runs/teacher"),
    seed: SeedOpt = None,
    resume: ResumeOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Train the teacher network and build every teacher kind listed under `teachers`."""
    from bayesdistill.runner import run_teachers

    files = run_teachers(_load(config, overrides), out, seed=seed, resume=resume, progress=progress)
    for label, path in files.items():
        _echo(f"{label:>16}: {path}")


@app.command()
def distill(
    config: ConfigArg,
    overrides: OverridesArg = None,
    teacher: Annotated[
        str, typer.Option("--teacher", "-t", help="A saved teacher.pt, or 'none' for one-hot.")
    ] = "none",
    out: OutOpt = Path("runs/student"),
    seed: SeedOpt = None,
    resume: ResumeOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Distil one student (config section `student`) from a saved teacher."""
    from bayesdistill.runner import run_distill

    summaries = run_distill(
        _load(config, overrides),
        out,
        teacher=None if teacher == "none" else teacher,
        seed=seed,
        resume=resume,
        progress=progress,
    )
    for summary in summaries:
        final = summary["final"]
        _echo(
            f"student <- {summary['label']} ({summary['loss_label']}): test accuracy "
            f"{_number(final.get('test_accuracy'), '.2f', 100)}%, "
            f"NLL {_number(final.get('test_nll'), '.3f')}, "
            f"ECE {_number(final.get('test_ece'), '.3f')}, "
            f"fluctuation {_number(summary.get('fluctuation'), '.2f')} pp"
        )
    _echo(f"run folder: {out}")


def _number(value: float | None, fmt: str, scale: float = 1.0) -> str:
    """A metric read from a summary: JSON has no NaN, so an undefined value is null."""
    return "n/a" if value is None else format(scale * value, fmt)


@app.command()
def study(
    config: ConfigArg,
    overrides: OverridesArg = None,
    out: OutOpt = Path("runs/study"),
    resume: ResumeOpt = False,
    progress: ProgressOpt = True,
    executor: ExecutorOpt = None,
    workers: WorkersOpt = None,
    devices: DevicesOpt = None,
    units_per_device: UnitsPerDeviceOpt = None,
    gpus_per_unit: GpusPerUnitOpt = None,
    address: AddressOpt = None,
) -> None:
    """For each seed: one teacher network, every teacher kind, one student per kind; tables and plots."""
    extra = executor_overrides(executor, workers, devices, address, units_per_device, gpus_per_unit)
    _run_study(_load(config, [*(overrides or []), *extra]), out, resume, progress)


@app.command()
def quickstart(
    overrides: OverridesArg = None,
    out: OutOpt = Path("runs/quickstart"),
    resume: ResumeOpt = False,
    progress: ProgressOpt = True,
    executor: ExecutorOpt = None,
    workers: WorkersOpt = None,
    devices: DevicesOpt = None,
    units_per_device: UnitsPerDeviceOpt = None,
    gpus_per_unit: GpusPerUnitOpt = None,
    address: AddressOpt = None,
) -> None:
    """The shipped MNIST-1D study (configs/quickstart.yaml): CPU, a few minutes."""
    extra = executor_overrides(executor, workers, devices, address, units_per_device, gpus_per_unit)
    with resources.as_file(resources.files("bayesdistill") / "configs" / QUICKSTART) as path:
        config = _load(path, [*(overrides or []), *extra])
    _run_study(config, out, resume, progress)


def _run_study(config, out: Path, resume: bool, progress: bool) -> None:
    from bayesdistill.runner import run_study

    tic = time.perf_counter()
    run_study(config, out, resume=resume, progress=progress)
    _echo((out / "results.md").read_text(encoding="utf-8"))
    _echo(
        f"finished in {time.perf_counter() - tic:.0f} s; results in {out}/ "
        "(results.csv, results.md, plots/)"
    )


@app.command()
def advise(
    config: ConfigArg,
    overrides: OverridesArg = None,
    out: OutOpt = Path("runs/study"),
    resume: ResumeOpt = False,
    progress: ProgressOpt = True,
    executor: ExecutorOpt = None,
    workers: WorkersOpt = None,
    devices: DevicesOpt = None,
    address: AddressOpt = None,
) -> None:
    """Which teacher? Build the study's teachers (no students) and rank them on held-out data.

    Writes into the study folder --out; `bayesdistill study` with the same config, --out
    and --resume then trains only the students.
    """
    import shlex

    from bayesdistill.runner.advise import run_advise

    extra = executor_overrides(executor, workers, devices, address)
    parsed = _load(config, [*(overrides or []), *extra])
    given = " ".join(shlex.quote(o) for o in overrides or [])
    command = (
        f"bayesdistill study {shlex.quote(str(config))} {given}{' ' if given else ''}"
        f"--out {shlex.quote(str(out))} --resume"
    )
    tic = time.perf_counter()
    _, text = run_advise(parsed, out, resume=resume, progress=progress, command=command)
    _echo(text)
    _echo(f"finished in {time.perf_counter() - tic:.0f} s; advice in {out}/advice.md")


@app.command()
def report(
    folders: Annotated[
        list[Path], typer.Argument(help="A study's output folder, or several to merge.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="With several folders: the new folder of the merged study."
        ),
    ] = None,
) -> None:
    """Rewrite results.csv, results.md and plots/ of a study from its run folders; with
    several compatible studies (other seeds or teacher kinds) and --out, merge them into
    one study folder with one table."""
    from bayesdistill.errors import ConfigError

    if len(folders) > 1 or out is not None:
        if out is None:
            raise ConfigError("merging several study folders needs --out, a new folder")
        if len(folders) < 2:
            raise ConfigError("--out merges several study folders; give two or more")
        from bayesdistill.runner.merge import merge_studies

        merged = merge_studies(folders, out)
        _echo((merged / "results.md").read_text(encoding="utf-8"))
        return
    _report_one(folders[0])


def _report_one(folder: Path) -> None:
    from bayesdistill.errors import ConfigError
    from bayesdistill.layout import RunKind, RunLayout
    from bayesdistill.reports import write_reports
    from bayesdistill.runner.output import recorded_kind

    if not folder.is_dir():
        raise FileNotFoundError(f"study folder not found: '{folder}'")
    kind = recorded_kind(RunLayout(folder))
    if kind is None:
        raise ConfigError(
            f"'{folder}' is not a study folder: it holds no bayesdistill run (no config.yaml); "
            "give the --out folder of a `bayesdistill study`"
        )
    if kind is not RunKind.STUDY:
        raise ConfigError(
            f"'{folder}' is not a study folder: it holds a {kind.value} run (made by "
            f"`bayesdistill {kind.value}`); `report` rewrites the tables of a study, so give "
            "the --out folder of a `bayesdistill study`"
        )
    write_reports(folder)
    _echo((folder / "results.md").read_text(encoding="utf-8"))


@app.command()
def theory(
    config: Annotated[
        str,
        typer.Argument(
            help="A theory config (configs/theory/<name>.yaml or a shipped name such as "
            "'gradient_noise'), or 'all' for every experiment at reduced size."
        ),
    ],
    overrides: OverridesArg = None,
    out: OutOpt = Path("runs/theory"),
    quick: Annotated[
        bool, typer.Option("--quick", help="Use the config's reduced-size `quick` overrides.")
    ] = False,
    full: Annotated[
        bool, typer.Option("--full", help="With 'all': run every experiment at full size.")
    ] = False,
    resume: ResumeOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Check the theory numerically where p* is known; writes report.md with a claims table."""
    from bayesdistill.theory import load_theory_config, run_all, run_theory
    from bayesdistill.theory.report import render_report

    tic = time.perf_counter()
    if config == "all":
        if overrides:
            raise typer.BadParameter(
                "'theory all' takes no overrides; run one config to override it"
            )
        _echo(run_all(out, quick=not full, resume=resume, progress=progress))
    else:
        result = run_theory(
            load_theory_config(config, overrides or []),
            out,
            quick=quick,
            resume=resume,
            progress=progress,
        )
        _echo(render_report(result))
    _echo(f"finished in {time.perf_counter() - tic:.0f} s; report in {out}/report.md")


@app.command(name="config")
def show_config(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Print the resolved config (defaults filled in, overrides applied)."""
    from bayesdistill.config import dump_config

    _echo(dump_config(_load(config, overrides)), nl=False)


@app.command(name="list")
def list_registered(
    kind: Annotated[
        str | None,
        typer.Argument(
            help="One of: datasets, models, teachers, losses, feature_losses, augmentations, "
            "theory, configs."
        ),
    ] = None,
) -> None:
    """Every registered name by kind, with its options and defaults."""
    from bayesdistill.cli.listing import render_registries

    _echo(render_registries(kind), nl=False)


def main() -> None:
    """Console entry point: run the app and turn a user's error into one clear line.

    Bad input of every kind (config, flags, data, files, ``--out``, the environment) ends
    with ``error: ...`` on stderr and exit status 2, usage errors with the parser's usage
    message; a bug (any other exception) keeps its traceback. Under ``torchrun`` every
    process joins the process group first, so each training run is distributed over the
    processes (`bayesdistill.train.distributed`).
    """
    try:
        _join_torchrun()
        app(standalone_mode=False)
    except (BayesDistillError, FileNotFoundError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("interrupted; rerun the same command with --resume to continue", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except USAGE_ERRORS as exc:  # a misspelled command or option, a missing value, ...
        if getattr(exc, "ctx", True) is None:  # raised before the command's context existed
            exc.ctx = _command_context(sys.argv[1:])  # type: ignore[attr-defined]
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except FloatingPointError as exc:  # training diverged: the message says what to change
        _fail(str(exc))
    except OSError as exc:
        message = os_error_message(exc)
        if message is None:
            raise
        _fail(message)
    except MemoryError:
        _fail("out of memory; lower the batch size, the data size or the model's width")
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        _fail(f"{str(exc).splitlines()[0]}; lower the batch size or the model's width")


def _command_context(argv: list[str]) -> Any:
    """A parser context of the command named in ``argv`` (of the app when none is), so that
    a usage error raised without one (an option's missing value) still shows the command's
    usage line and where to find its help. None when even that cannot be made."""
    import typer.main

    try:
        group = typer.main.get_command(app)
        root = group.make_context(app.info.name or "bayesdistill", [], resilient_parsing=True)
        name = next((a for a in argv if a in getattr(group, "commands", {})), None)
        if name is None:
            return root
        command = group.get_command(root, name)
        return command.make_context(name, [], parent=root, resilient_parsing=True)
    except Exception:  # only a nicer message is at stake
        return None


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(2)


if __name__ == "__main__":
    main()
