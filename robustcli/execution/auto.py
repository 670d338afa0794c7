"""The default executor (``executor = "auto"``): both cores for the main job, one torch thread
per process, so that it never collapses beside other jobs.

Every instance trains with **one torch thread** (``OMP_NUM_THREADS`` where the user set it), and
each ``run`` (one step of a selection, one assessment, one size of a study) goes one of two ways:

* **spread** over the local pool (:class:`~robustcli.execution.pool.LocalPoolExecutor`), one
  worker per available core (:func:`~robustcli.execution.cores.available_cores`: affinity and
  cgroup quota), when the run has at least two units of work (two stacks or plain instances, see
  :func:`~robustcli.execution.planning.plan_units`), the machine gives at least two cores, it
  trains on the CPU and the task pickles; the pool is started only for a run worth its start (a
  few seconds: a fork server importing torch, the data sent to each worker), about
  :data:`POOL_MIN_WORK` parameter-examples (parameters x (training + test examples) x epoch cap,
  summed over the instances; ~10 s of one core for the calorimeter's Model 2), and once started
  it takes every later run of two units or more;
* otherwise **in this process**.

Why one thread (measured in ``benchmarks/main_job.py``, see ``benchmarks/README.md``): torch's
threads synchronise at each of a training's many small ops; beside another busy process each such
op waits for a core that the neighbour holds, and with OpenMP's default policy the waiting threads
spin, taking the neighbour's core in turn (with OpenMP's default, 1.6-7x slower beside
another job; with passive waits, see :mod:`robustcli.execution.cores`, still ~1.3x). One-thread
processes never wait for each other, so a neighbour slows them by the share of the CPU it takes and
no more, and independent candidates (8 in the demo's first selection step) fill the cores. Alone on
a quiet machine a lone instance would be ~15 % faster with two threads: ``--executor inprocess``
(a thread per core) or ``--threads 2``.

The choice depends only on the runs (their jobs, in order: a pool started by one run takes the
later ones) and the machine's cores, never on the load, and every instance trains with one thread
whichever way it goes: the same command on the same machine trains the same stacks and gives the
same numbers; each run records its thread count and stack (``robust reproduce`` uses them). ``--executor`` or ``--threads`` replace this choice (see
:func:`robustcli.execution.factory.make_executor`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from robustcli.config import EngineName, TrainingSettings
from robustcli.execution.cores import available_cores, omp_num_threads
from robustcli.execution.protocol import Job, Trained, TrainingExecutor
from robustcli.task import Candidate, Task, TaskData

if TYPE_CHECKING:
    from robustcli.execution.pool import LocalPoolExecutor

__all__ = ["POOL_MIN_WORK", "AutoExecutor"]

log = logging.getLogger("robustcli")

#: parameter-examples (parameters x examples x epochs) from which a run is spread over the pool:
#: Model 2 (24k parameters) runs about 4e8 of them per second of one core, so ~10 s of work
POOL_MIN_WORK = 4e9


class AutoExecutor:
    """Spreads a run over one-thread worker processes when it pays, else trains here (see module)."""

    name = "auto"

    def __init__(self, engine: EngineName = "stacked", *, max_stack: int = 64, workers: int | None = None,
                 min_work: float | None = None) -> None:  # fmt: skip
        self.engine = engine
        self.max_stack = max_stack
        #: torch threads when training here (OMP_NUM_THREADS if set, else 1, as in the pool);
        #: processes of the pool (``--workers``, default: the cores this process may use)
        self.threads = omp_num_threads() or 1
        self.workers = int(workers or available_cores())
        self.min_work = float(POOL_MIN_WORK if min_work is None else min_work)
        self._here: TrainingExecutor | None = None
        self._pool: LocalPoolExecutor | None = None
        self._params: dict[str, int] = {}
        self._pickles: dict[tuple[int, int], bool] = {}
        #: how the last run trained: "local" (the pool) or "inprocess", for logs and tests
        self.last: str | None = None

    # -- the choice --------------------------------------------------------------------------
    def spreads(self, task: Task, data: TaskData, jobs: Sequence[Job], settings: TrainingSettings) -> bool:
        """Whether ``jobs`` train in the pool (True) or in this process."""
        from robustcli.execution.planning import group_jobs
        from robustcli.training.instance import resolve_device

        if self.workers < 2 or len(jobs) < 2 or resolve_device(settings.device).type != "cpu":
            return False
        # two units at least: in the plain engine every job is one; stacked, two stack groups, or one
        # group the pool cuts in two (it caps a stack at no fewer than 2: a group of 2 stays one stack)
        if self.engine == "stacked" and len(group_jobs(jobs)) < 2 and len(jobs) < 3:
            return False
        # a pool that runs already costs nothing more to use; starting one pays only for enough work
        worth = self._pool is not None or self._work(task, data, jobs, settings) >= self.min_work
        return worth and self._pickle_ok(task, data)

    def _work(self, task: Task, data: TaskData, jobs: Sequence[Job], settings: TrainingSettings) -> float:
        epochs = settings.early_stopping.max_epochs
        total = 0.0
        for cand, spec in jobs:
            examples = spec.train_size + (spec.test_size or data.test_size)
            total += self._parameters(task, cand) * examples * epochs
            if total >= self.min_work:
                break
        return total

    def _parameters(self, task: Task, cand: Candidate) -> int:
        if cand.id not in self._params:
            import torch

            with torch.random.fork_rng(devices=[]):  # building a model draws its initial weights
                self._params[cand.id] = sum(p.numel() for p in task.build_model(cand).parameters())
        return self._params[cand.id]

    def _pickle_ok(self, task: Task, data: TaskData) -> bool:
        """Whether the task and its data can go to worker processes (a task defined in a notebook may not)."""
        from robustcli.execution.pool import dumps_payload

        key = (id(task), id(data))
        if key not in self._pickles:
            try:
                dumps_payload(task, data)
                self._pickles[key] = True
            except Exception as exc:  # noqa: BLE001 - any failure to pickle means: train here
                log.info("training in this process: task %s does not pickle for worker processes (%s)", task.name, exc)
                self._pickles[key] = False
        return self._pickles[key]

    # -- the executor ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Nothing to connect to: the pool starts with the first run that spreads."""

    def run(
        self, task: Task, data: TaskData, jobs: Sequence[Job], settings: TrainingSettings
    ) -> Iterator[Trained]:
        if not jobs:
            return
        if self.spreads(task, data, jobs, settings):
            self.last = "local"
            if self._pool is None:
                from robustcli.execution.pool import LocalPoolExecutor

                self._pool = LocalPoolExecutor(self.workers, self.engine, threads=1, max_stack=self.max_stack)
            yield from self._pool.run(task, data, jobs, settings)
            return
        self.last = "inprocess"
        import torch

        torch.set_num_threads(self.threads)
        if self._here is None:
            from robustcli.execution.inprocess import in_process_executor

            self._here = in_process_executor(self.engine, self.max_stack)
        yield from self._here.run(task, data, jobs, settings)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        self._pool = None
