"""A study as a graph of units, and what every executor shares.

A study is a graph of `Unit`s (the teacher network of a seed, each teacher kind built from
it, each student: see `bayesdistill.runner.units`); an `Executor` runs them where a
`Placement` says and reports an `Outcome`. `UnitGraph` is the executors' common
bookkeeping: what is ready, finished, failed or skipped. The executors themselves are in
`bayesdistill.runner.executors` (in-process, a pool) and `bayesdistill.runner.ray_executor`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bayesdistill.errors import BayesDistillError, ConfigError

log = logging.getLogger("bayesdistill")

UnitRunner = Callable[["Unit", "Placement"], None]
"""Runs one unit in the calling process, given where it runs (device, threads)."""

LOG_TAIL_LINES = 20
DEBUG_VARIABLE = "BAYESDISTILL_DEBUG"
"""Set to 1 (``bayesdistill --debug``; worker processes inherit it): a failed unit's
traceback is shown on the console too, not only in its log."""
TRACEBACK = "Traceback (most recent call last):"


class StudyFailedError(BayesDistillError):
    """Some units of a study failed; the others finished (see the message)."""


@dataclass(frozen=True)
class Unit:
    """One piece of a study: ``name`` (unique, e.g. ``seed_0/teacher/laplace``), the units
    it needs finished first, and what to run (``kind`` and plain ``args``, picklable)."""

    name: str
    kind: str
    seed: int
    deps: tuple[str, ...] = ()
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Placement:
    """Where a unit runs: a torch device string and a number of CPU threads (None: leave
    torch's default)."""

    device: str = "auto"
    threads: int | None = None


@dataclass
class Outcome:
    """What happened to the units of one execution."""

    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """unit name → the end of its log (the error)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """unit name → the failed unit it depends on."""

    def raise_for_failures(self) -> None:
        if not self.failed:
            return
        lines = [f"{len(self.failed)} unit(s) failed; {len(self.finished)} finished:"]
        for name, tail in self.failed.items():
            shown = tail.strip().splitlines()[-8:] if show_tracebacks() else [error_summary(tail)]
            lines.append(f"- {name}:\n    " + "\n    ".join("\n".join(shown).splitlines()))
        if self.skipped:
            lines.append(
                f"not run, because a unit they need failed: {', '.join(sorted(self.skipped))}"
            )
        if not show_tracebacks():
            lines.append(
                "each unit's traceback is in its log (logs/<unit>.log in the run folder; "
                "bayesdistill --debug shows it here)"
            )
        lines.append("fix the cause and rerun the same command with --resume: it runs only these")
        raise StudyFailedError("\n".join(lines))


def show_tracebacks() -> bool:
    """Whether failed units show their tracebacks on the console (`DEBUG_VARIABLE`)."""
    return os.environ.get(DEBUG_VARIABLE) == "1"


def error_summary(text: str) -> str:
    """The error a unit failed with, from its report: the last exception's type and message
    (what follows the last frame of the last traceback in ``text``, with any note after it);
    ``text`` itself when it holds no traceback (a worker that died)."""
    if TRACEBACK not in text:
        return text.strip()
    lines = text[text.rindex(TRACEBACK) :].splitlines()[1:]
    first = next((i for i, line in enumerate(lines) if not line.startswith(" ")), len(lines))
    return "\n".join(lines[first:]).strip() or text.strip()


class Executor(Protocol):
    def run(self, units: Sequence[Unit], runner: UnitRunner) -> Outcome:
        """Run every unit after the units it depends on; never raise for a unit's failure."""
        ...


def check_graph(units: Sequence[Unit]) -> None:
    """Raise `ConfigError` for duplicate names, unknown dependencies or a cycle."""
    names = [u.name for u in units]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"duplicate unit names: {sorted({n for n in names if names.count(n) > 1})}"
        )
    known = set(names)
    for unit in units:
        missing = [d for d in unit.deps if d not in known]
        if missing:
            raise ConfigError(f"unit '{unit.name}' depends on unknown units {missing}")
    done: set[str] = set()
    pending = list(units)
    while pending:
        ready = [u for u in pending if set(u.deps) <= done]
        if not ready:
            raise ConfigError(f"the units {[u.name for u in pending]} depend on each other")
        done.update(u.name for u in ready)
        pending = [u for u in pending if u.name not in done]


class UnitProgress:
    """Logs units finished / total with the names of the running units."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.running = total, 0, set()

    def start(self, name: str) -> None:
        self.running.add(name)
        self._log()

    def end(self, name: str) -> None:
        self.running.discard(name)
        self.done += 1
        if self.done == self.total:
            self._log()

    def back(self, name: str) -> None:
        """``name`` did not start after all (it waits, or runs again)."""
        self.running.discard(name)

    def _log(self) -> None:
        running = ", ".join(sorted(self.running)) or "-"
        log.info("units %d/%d finished; running: %s", self.done, self.total, running)


class UnitGraph:
    """Bookkeeping shared by the executors: what is ready, finished, failed, skipped."""

    def __init__(self, units: Sequence[Unit]) -> None:
        check_graph(units)
        self.units = {u.name: u for u in units}
        self.waiting = list(units)
        self.outcome = Outcome()
        self.progress = UnitProgress(len(units))

    def ready(self) -> list[Unit]:
        """Units whose dependencies all finished (removed from the waiting list); units
        with a failed dependency are marked skipped."""
        done, bad = set(self.outcome.finished), set(self.outcome.failed) | set(self.outcome.skipped)
        out, still = [], []
        for unit in self.waiting:
            broken = [d for d in unit.deps if d in bad]
            if broken:
                self.outcome.skipped[unit.name] = broken[0]
                self.progress.done += 1
            elif set(unit.deps) <= done:
                out.append(unit)
            else:
                still.append(unit)
        self.waiting = still
        return out

    def finished(self, name: str) -> None:
        self.outcome.finished.append(name)
        self.progress.end(name)

    def failed(self, name: str, tail: str) -> None:
        self.outcome.failed[name] = tail
        shown = log_tail(tail) if show_tracebacks() else error_summary(tail)
        log.error("unit %s failed: %s", name, shown)
        self.progress.end(name)


def log_tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a unit's report."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def unit_log_path(out: Path, unit: Unit) -> Path:
    """Where a unit's log goes (``out/logs/<unit name with / as __>.log``)."""
    return out / "logs" / (unit.name.replace("/", "__") + ".log")
