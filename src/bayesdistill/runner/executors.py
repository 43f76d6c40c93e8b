"""Executors: run a study's units (a dependency graph) in-process, in a pool, or on Ray.

A study is a graph of `Unit`s (`bayesdistill.runner.graph`: the teacher network of a seed,
each teacher kind built from it, each student, see `bayesdistill.runner.units`). A unit reads its inputs from the run
folder and writes its outputs there, so it can run in any process that sees the folder;
the executor only decides where and when:

- `LocalExecutor`: in this process, one unit after the other (the default);
- `ProcessExecutor`: N worker processes on this machine, each pinned to a device from a
  list and to its share of the CPU threads; a worker that dies (killed, out of memory) is
  replaced, and the unit it was running is reported failed (one that died while idle is
  replaced before it is handed a unit). Several workers may share a
  GPU: a unit starts beside others only where its worker finds the memory it needs free,
  and a unit that runs out of GPU memory beside others is rerun once, alone
  (`bayesdistill.runner.packing`);
- `RayExecutor` (`bayesdistill.runner.ray_executor`): the units as Ray tasks with their
  dependencies, on a running cluster or a local one.

A unit that fails (an exception, a killed worker) is reported with its name and the end
of its log; the units that do not depend on it go on, and a rerun with ``--resume``
retries only what did not finish. Progress is logged as units finished / total with the
names of the running units.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bayesdistill.errors import ConfigError
from bayesdistill.runner.graph import (
    Outcome,
    Placement,
    Unit,
    UnitGraph,
    UnitRunner,
)
from bayesdistill.runner.packing import (
    GIB,
    CudaMemory,
    DeviceBudget,
    DeviceMemory,
    has_room,
    is_out_of_memory,
)

log = logging.getLogger("bayesdistill")

WAIT_SECONDS = 5.0
"""Longest the pool sleeps between looks at its busy workers. It wakes at once when one
answers or dies (`multiprocessing.connection.wait` on their pipes and process sentinels),
so this only bounds how late a missed wake-up is noticed; a look costs microseconds."""
REAP_SECONDS = 1.0
"""How long the pool waits to collect a worker found dead (its exit code goes into the
report): a dead process is collected at once; the bound keeps a stuck one from stalling
the pool."""
OOM_EXIT_SECONDS = 10.0
"""How long a worker that ran out of GPU memory gets to end itself (it returns after its
answer, and its CUDA context goes with it) before it is terminated."""
SHUTDOWN_SECONDS = 10.0
"""How long the workers together get to leave after being told to stop, before the ones
still running are terminated: a worker between units leaves at once."""

FINISHED, FAILED, OUT_OF_MEMORY, HELD, DIED = "finished", "failed", "out_of_memory", "held", "died"
"""What a pool worker answers for a unit (DIED: what the pool concludes when it answers nothing)."""


class LocalExecutor:
    """Every unit in this process, one after the other (today's sequential study)."""

    def __init__(self, placement: Placement | None = None) -> None:
        self.placement = placement or Placement()

    def run(self, units: Sequence[Unit], runner: UnitRunner) -> Outcome:
        graph = UnitGraph(units)
        while True:
            batch = graph.ready()
            if not batch:
                return graph.outcome
            for unit in batch:
                graph.progress.start(unit.name)
                try:
                    runner(unit, self.placement)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception:
                    graph.failed(unit.name, traceback.format_exc())
                else:
                    graph.finished(unit.name)


def _worker(
    placement: Placement,
    connection: Any,
    runner: UnitRunner,
    log_level: int,
    memory: DeviceMemory,
) -> None:
    """A pool worker: run the units sent on ``connection`` until None, answer each with
    (event, unit name, log tail, bytes). Before a unit sent with the free bytes it requires,
    look at the device: too little free, answer HELD with the bytes found instead of running
    it; after a unit, answer with its peak memory and hand the cached memory back to the
    device. After running out of GPU memory the worker ends (the pool starts a fresh one,
    and the device gets back all this process held). Its bayesdistill log goes to stderr at
    the parent's level, as the parent's would."""
    logger = logging.getLogger("bayesdistill")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logger.handlers[:] = [handler]
    logger.setLevel(log_level)
    logger.propagate = False
    if placement.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(placement.threads)
        import torch

        torch.set_num_threads(placement.threads)
    device = placement.device
    while True:
        message = connection.recv()
        if message is None:
            return
        unit, required = message
        if required is not None:
            free = memory.free_bytes(device)
            if not has_room(required, free):
                connection.send((HELD, unit.name, "", free))
                continue
        memory.reset_peak(device)
        event, text = FINISHED, ""
        try:
            runner(unit, placement)
        except BaseException as exc:  # report everything, a KeyboardInterrupt included
            event = OUT_OF_MEMORY if is_out_of_memory(exc) else FAILED
            text = traceback.format_exc()
        peak = memory.peak_bytes(device) if event == FINISHED else None
        memory.release(device)
        connection.send((event, unit.name, text, peak))
        if event == OUT_OF_MEMORY:
            return


@dataclass
class _Worker:
    process: Any
    connection: Any
    unit: Unit | None = None


class ProcessExecutor:
    """N worker processes on this machine (spawned, so CUDA works in them).

    Worker i runs on ``devices[i % len(devices)]`` with ``threads`` CPU threads (default:
    the CPU count divided among the workers), so ``workers = len(devices) * K`` puts K
    workers on each device. Units are handed to idle workers as their dependencies finish,
    each worker over its own pipe, so a worker that dies (killed, out of memory) takes down
    nothing else: it is replaced, and its unit reported failed. A worker found dead when a
    unit is to be handed to it (it died while idle) is replaced first, and the unit goes to
    the new one; a unit whose hand-over fails (the worker died just then) is reported failed.

    Workers sharing a device share its memory (`bayesdistill.runner.packing`): a unit
    starts beside others only where its worker finds free what it needs (``unit_memory_gib``
    GiB, or else the peak measured of a unit like it), otherwise it waits until a unit on
    that device ends; a unit that runs out of GPU memory beside others is rerun once, alone
    on its device, after they end. ``memory`` measures the devices (default: `CudaMemory`,
    which measures CUDA devices only; elsewhere units start unchecked).
    """

    def __init__(
        self,
        workers: int,
        devices: Sequence[str] = ("auto",),
        threads: int | None = None,
        *,
        unit_memory_gib: float | None = None,
        memory: DeviceMemory | None = None,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        if not devices:
            raise ConfigError("devices must name at least one device, e.g. cpu or cuda:0")
        if unit_memory_gib is not None and not unit_memory_gib > 0:
            raise ConfigError(f"unit_memory_gib must be > 0 GiB, got {unit_memory_gib}")
        self.workers = workers
        self.devices = list(devices)
        self.threads = threads if threads is not None else max(1, (os.cpu_count() or 1) // workers)
        self.unit_bytes = None if unit_memory_gib is None else int(unit_memory_gib * GIB)
        self.memory = memory if memory is not None else CudaMemory()

    def placement(self, index: int) -> Placement:
        return Placement(self.devices[index % len(self.devices)], self.threads)

    def run(self, units: Sequence[Unit], runner: UnitRunner) -> Outcome:
        shares = [self.placement(i).device for i in range(self.workers)]
        log.info(
            "pool: %d workers (%s), %d CPU threads each",
            self.workers,
            ", ".join(f"{d} ×{shares.count(d)}" for d in dict.fromkeys(shares)),
            self.threads,
        )
        pool = _Pool(self, UnitGraph(units), runner)
        try:
            while True:
                pool.ready += pool.graph.ready()
                lost = pool.hand_out()
                busy = [w for w in pool.workers if w.unit is not None]
                if not busy:
                    if lost:  # a hand-over failed: look again at what may start
                        continue
                    if pool.ready:  # cannot happen: an empty device takes any unit
                        raise RuntimeError(f"no worker may start {[u.name for u in pool.ready]}")
                    return pool.graph.outcome
                signals = [w.connection for w in busy] + [w.process.sentinel for w in busy]
                mp.connection.wait(signals, timeout=WAIT_SECONDS)
                pool.collect()
        finally:
            pool.close()


class _Pool:
    """One `ProcessExecutor.run`: its worker processes, the units ready to start, and what
    the device budget knows; `hand_out` gives idle workers units, `collect` reads what the
    busy ones answered."""

    def __init__(self, executor: ProcessExecutor, graph: UnitGraph, runner: UnitRunner) -> None:
        self.executor = executor
        self.graph = graph
        self.runner = runner
        self.budget = DeviceBudget(executor.unit_bytes)
        self.context = mp.get_context("spawn")
        self.log_level = logging.getLogger("bayesdistill").getEffectiveLevel()
        self.ready: list[Unit] = []
        self.reruns: set[str] = set()
        self.workers = [self.start(i) for i in range(executor.workers)]

    def device(self, index: int) -> str:
        return self.executor.placement(index).device

    def start(self, index: int) -> _Worker:
        """A fresh worker process in slot ``index`` (also its replacement)."""
        mine, theirs = self.context.Pipe()
        process = self.context.Process(
            target=_worker,
            args=(
                self.executor.placement(index),
                theirs,
                self.runner,
                self.log_level,
                self.executor.memory,
            ),
            daemon=True,
        )
        process.start()
        theirs.close()
        return _Worker(process, mine)

    def hand_out(self) -> bool:
        """Give each idle worker the first ready unit its device has room for; whether a
        hand-over failed (its unit is reported failed and the worker replaced)."""
        lost = False
        for index, worker in enumerate(self.workers):
            if worker.unit is not None:
                continue
            device = self.device(index)
            unit = next((u for u in self.ready if self.budget.may_start(u, device)), None)
            if unit is None:
                continue
            if not worker.process.is_alive():  # it died while idle: nothing is lost
                log.warning(
                    "worker %d (%s) died while idle (exit code %s); a new one takes its place",
                    index,
                    device,
                    worker.process.exitcode,
                )
                self.workers[index] = worker = self.start(index)
            self.ready.remove(unit)
            self.graph.progress.start(unit.name)
            try:
                worker.connection.send((unit, self.budget.required(unit, device)))
            except OSError:  # BrokenPipeError: it died as the unit was handed over
                worker.process.join(timeout=REAP_SECONDS)
                self.graph.failed(unit.name, _died(worker, "it was handed to"))
                self.workers[index] = self.start(index)
                lost = True
                continue
            worker.unit = unit
            self.budget.started(unit, device)
        return lost

    def collect(self) -> None:
        """Settle the unit of every busy worker that answered or died."""
        for index, worker in enumerate(self.workers):
            if worker.unit is None:
                continue
            if worker.connection.poll():
                try:
                    event, _, text, number = worker.connection.recv()
                except (EOFError, OSError):
                    event, text, number = DIED, "", None
            elif not worker.process.is_alive():
                event, text, number = DIED, "", None
            else:
                continue
            unit, worker.unit = worker.unit, None
            if event == HELD:
                self.held(unit, index, number)
            elif event == OUT_OF_MEMORY:
                self.out_of_memory(unit, index, text)
            else:
                self.ended(unit, index, event, text, number)

    def back_to_ready(self, unit: Unit) -> None:
        """``unit`` is to start again later (first in line)."""
        self.graph.progress.back(unit.name)
        self.ready.insert(0, unit)

    def held(self, unit: Unit, index: int, free: int) -> None:
        """The worker found too little free memory for ``unit``: it waits."""
        device = self.device(index)
        self.budget.held(unit, device, free)
        self.back_to_ready(unit)
        log.info(
            "unit %s waits for memory: %.1f GiB free on %s, it needs %.1f GiB; it starts "
            "when a unit there ends",
            unit.name,
            free / GIB,
            device,
            (self.budget.need(unit) or 0) / GIB,
        )

    def out_of_memory(self, unit: Unit, index: int, text: str) -> None:
        """``unit`` ran out of GPU memory and its worker ends: replace the worker, and rerun
        the unit alone once where others ran beside it, else report it failed."""
        device = self.device(index)
        others = [n for n in self.budget.running_on(device) if n != unit.name]
        worker = self.workers[index]
        worker.process.join(timeout=OOM_EXIT_SECONDS)  # it ends itself, freeing its memory
        if worker.process.is_alive():
            worker.process.terminate()
        self.workers[index] = self.start(index)
        if self.budget.out_of_memory(unit, device):
            self.reruns.add(unit.name)
            self.back_to_ready(unit)
            log.warning(
                "unit %s ran out of GPU memory on %s beside %s; it reruns alone there once "
                "they end",
                unit.name,
                device,
                ", ".join(others) or "other units",
            )
        else:
            self.graph.failed(unit.name, text + _out_of_memory_note(unit, device, self.reruns))

    def ended(self, unit: Unit, index: int, event: str, text: str, peak: int | None) -> None:
        """``unit`` finished, failed, or its worker died running it (then replaced)."""
        self.budget.ended(unit, self.device(index), peak if event == FINISHED else None)
        if event == FINISHED:
            self.graph.finished(unit.name)
        elif event == FAILED:
            self.graph.failed(unit.name, text)
        else:
            worker = self.workers[index]
            worker.process.join(timeout=REAP_SECONDS)
            self.graph.failed(unit.name, _died(worker, "running it"))
            self.workers[index] = self.start(index)

    def close(self) -> None:
        """Tell every worker to stop; terminate those still running after the grace time."""
        for worker in self.workers:
            with contextlib.suppress(OSError, BrokenPipeError):
                worker.connection.send(None)
        deadline = time.monotonic() + SHUTDOWN_SECONDS
        for worker in self.workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.terminate()


def _died(worker: _Worker, when: str) -> str:
    """The report of a unit whose worker process died ``when`` (a failed unit's text)."""
    return (
        f"the worker process {when} died (exit code {worker.process.exitcode}: killed, or out "
        "of memory)"
    )


def _out_of_memory_note(unit: Unit, device: str, reruns: set[str]) -> str:
    """The last line of the report of a unit that ran out of GPU memory for good."""
    if unit.name in reruns:
        return (
            f"\nit ran out of GPU memory on {device} beside other units, and again when rerun "
            "alone there: lower its batch size or network width"
        )
    return (
        f"\nit ran out of GPU memory on {device} with no other unit there: lower its batch "
        "size or network width"
    )
