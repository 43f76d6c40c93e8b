"""The Ray executor: a study's units as Ray tasks with their dependencies.

On a running cluster (``address``) or a local one; one GPU per task where the study runs
on CUDA, or a share of one (``gpus_per_task=0.25``: four tasks per GPU). Ray is optional
(``pip install -e ".[ray]"``): it is imported when an executor is made.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from bayesdistill.errors import ConfigError
from bayesdistill.runner.graph import Outcome, Placement, Unit, UnitGraph, UnitRunner

log = logging.getLogger("bayesdistill")


class RayExecutor:
    """The units as Ray tasks, each waiting for the tasks of its dependencies.

    ``address``: a running cluster to join (``ray.init(address=...)``); None starts a local
    one with ``num_cpus`` CPUs (and ``num_gpus`` GPUs; None: the ones Ray finds). Each task
    asks for ``cpus_per_task`` CPUs and ``gpus_per_task`` GPUs (`task_options`): 0 runs the
    units on the CPU, 1 on a GPU of their own, a share such as 0.25 packs four units on a
    GPU (Ray does not look at memory: the share must leave each unit what it needs).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        num_gpus: int | None = None,
        cpus_per_task: int = 1,
        gpus_per_task: float = 0.0,
    ) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError(
                "executor 'ray' needs Ray, which is not installed; install it with "
                "pip install -e \".[ray]\" (or pip install 'ray>=2.9')"
            ) from None
        if not 0 <= gpus_per_task <= 1:  # NaN fails the comparison too
            raise ConfigError(
                f"gpus_per_task must be 0 (the CPU) or a share of one GPU in (0, 1], e.g. 0.25 "
                f"for four units per GPU (a unit runs on one GPU), got {gpus_per_task}"
            )
        if cpus_per_task < 1:
            raise ConfigError(f"cpus_per_task must be >= 1, got {cpus_per_task}")
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task

    def task_options(self) -> dict[str, Any]:
        """The resources each unit's task asks Ray for (``.options()`` of the task)."""
        return {"num_cpus": self.cpus_per_task, "num_gpus": self.gpus_per_task, "max_retries": 0}

    def run(self, units: Sequence[Unit], runner: UnitRunner) -> Outcome:
        import ray

        graph = UnitGraph(units)
        started_here = not ray.is_initialized()
        if started_here:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address is not None:
                options["address"] = self.address
            else:
                if self.num_cpus is not None:
                    options["num_cpus"] = self.num_cpus
                if self.num_gpus is not None:
                    options["num_gpus"] = self.num_gpus
            ray.init(**options)
        placement = Placement(
            "cuda" if self.gpus_per_task > 0 else "cpu", threads=self.cpus_per_task
        )
        remote = ray.remote(_ray_task).options(**self.task_options())
        refs: dict[str, Any] = {}
        names: dict[Any, str] = {}
        try:
            pending = list(units)
            while pending:  # submit in dependency order; Ray waits for the deps itself
                ready = [u for u in pending if all(d in refs for d in u.deps)]
                for unit in ready:
                    ref = remote.remote(runner, unit, placement, *[refs[d] for d in unit.deps])
                    refs[unit.name] = ref
                    names[ref] = unit.name
                pending = [u for u in pending if u.name not in refs]
            waiting = list(refs.values())
            log.info("%d units submitted to Ray", len(waiting))
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                name = names[done[0]]
                graph.waiting = [u for u in graph.waiting if u.name != name]
                try:
                    ray.get(done[0])
                except ray.exceptions.RayError as exc:  # raised, or a worker died / OOM
                    bad = set(graph.outcome.failed) | set(graph.outcome.skipped)
                    broken = [d for d in graph.units[name].deps if d in bad]
                    if broken:  # Ray did not run it: a dependency's error stands for it
                        graph.outcome.skipped[name] = broken[0]
                        graph.progress.done += 1
                    else:
                        graph.failed(name, f"{type(exc).__name__}: {exc}")
                else:
                    graph.finished(name)
            return graph.outcome
        finally:
            if started_here:
                ray.shutdown()


def _ray_task(runner: UnitRunner, unit: Unit, placement: Placement, *deps: Any) -> str:
    """A Ray task. ``deps`` are the dependencies' results, which makes Ray run it after
    them (and not at all when one failed)."""
    runner(unit, placement)
    return unit.name
