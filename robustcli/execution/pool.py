"""The local pool executor: jobs spread over worker processes, one torch thread each.

Same interface as :class:`~robustcli.execution.inprocess.InProcessExecutor`. The jobs are cut
into *units* in this (coordinating) process by :func:`~robustcli.execution.planning.plan_units`,
the planner the in-process stacked engine uses too:

* ``engine="stacked"``: the very stacks the in-process :class:`StackedExecutor` would train
  (instances grouped by stack signature and cut the same way), so a unit's results are bitwise those
  of the in-process stacked engine run with the workers' thread count (a kernel may sum in
  another order with another count; each run records its count and `robust reproduce` uses it); when there are fewer stacks than workers the stack size is
  capped so that every worker gets one (``split=True``, default), which changes the stacks;
* ``engine="plain"`` (or a candidate the stacked engine trains plainly): one instance per unit.

Each unit runs in a worker process (``forkserver`` on Linux, ``spawn`` elsewhere: torch and
``fork`` do not mix) with ``torch.set_num_threads(threads)`` (1 by default). The task and its
data are pickled once per run (with cloudpickle) and sent once per worker; results are
yielded unit by unit in completion order. Only the coordinating process writes to MLflow.

The pool stays up between ``run`` calls with the same task and data (the selection loop calls
``run`` once per round); :meth:`LocalPoolExecutor.close` shuts it down.

Measured on a 2-core VM (``python benchmarks/executors.py``), see that file's docstring.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing.context import BaseContext
from typing import Any

from robustcli.config import EngineName, TrainingSettings
from robustcli.execution.cores import available_cores
from robustcli.execution.planning import Unit, plan_units
from robustcli.execution.protocol import Job, Trained
from robustcli.task import Task, TaskData

__all__ = ["LocalPoolExecutor", "dumps_payload", "plan_units", "run_unit"]

def dumps_payload(task: Task, data: TaskData) -> bytes:
    """The task and its data as bytes for the workers: cloudpickle where installed (it also takes
    tasks that hold local functions, e.g. a cached search space), plain pickle otherwise."""
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle comes with mlflow and ray
        return pickle.dumps((task, data), protocol=pickle.HIGHEST_PROTOCOL)
    return cloudpickle.dumps((task, data), protocol=pickle.HIGHEST_PROTOCOL)


def run_unit(task: Task, data: TaskData, unit: Unit, settings: TrainingSettings) -> list[Trained]:
    """Train one unit here (in a worker) with the in-process engines; its (candidate, result) pairs."""
    if unit.engine == "stacked":
        from robustcli.execution.stacked import StackedExecutor

        return list(StackedExecutor(max_stack=unit.size).run_unit(task, data, unit, settings))
    from robustcli.execution.inprocess import InProcessExecutor

    out = list(InProcessExecutor().run(task, data, unit.jobs, settings))
    for _, result in out:
        if unit.plain_reason is not None:
            result.plain_reason = unit.plain_reason
    return out


# -- the worker side -----------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(payload: bytes, threads: int, parent: int | None = None) -> None:
    import torch

    if parent is not None:
        _die_with(parent)
    torch.set_num_threads(threads)
    _WORKER["task"], _WORKER["data"] = pickle.loads(payload)


def _die_with(parent: int) -> None:
    """End this worker when the coordinating process ``parent`` ends, however it ends (SIGKILL
    included): an idle worker waits on its task queue forever, and keeps the fork server's
    resource tracker alive with it. The worker's own parent is the fork server, so the kernel's
    parent-death signal (set too, on Linux) covers only the fork server's death; a thread
    watching ``parent`` covers the coordinator's."""
    import threading
    import time

    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the thread alone
            pass

    def watch() -> None:
        fd = None
        try:
            fd = os.pidfd_open(parent)  # readable once the process has ended (a zombie counts)
        except (AttributeError, OSError):  # pragma: no cover - no pidfd (old kernel, macOS): poll
            fd = None
        if fd is not None:
            import select

            select.select([fd], [], [])
            os._exit(1)
        while True:  # pragma: no cover - the fallback
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # the pid went to another user's process: ours is gone
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, name="robust-parent-watch", daemon=True).start()


def _work(unit: Unit, settings: TrainingSettings) -> list[Trained]:
    return run_unit(_WORKER["task"], _WORKER["data"], unit, settings)


def _context() -> BaseContext:
    if sys.platform.startswith("linux"):
        ctx = multiprocessing.get_context("forkserver")
        # the fork server imports torch once; each worker is then a cheap fork of a clean process
        ctx.set_forkserver_preload(["torch", "robustcli.execution.pool", "robustcli.training.stacked"])
        return ctx
    return multiprocessing.get_context("spawn")


class LocalPoolExecutor:
    """Trains (candidate, spec) jobs in worker processes and yields (candidate, result) as each unit finishes."""

    name = "local"

    def __init__(
        self,
        workers: int | None = None,
        engine: EngineName = "stacked",
        *,
        threads: int = 1,
        max_stack: int | None = None,
        split: bool = True,
    ) -> None:
        if engine not in ("stacked", "plain"):
            raise ValueError(f"engine must be 'stacked' or 'plain', got {engine!r}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = int(workers or available_cores())  # the affinity set and the cgroup quota
        self.engine = engine
        self.threads = int(threads)
        self.max_stack = max_stack
        self.split = split
        # the pool, and the task and data its workers hold (kept alive so that their ids stay theirs)
        self._pool: ProcessPoolExecutor | None = None
        self._key: tuple[int, int] | None = None
        self._keep: tuple[Task, TaskData] | None = None
        #: the units of the last run, for logs and tests
        self.units: list[Unit] = []
        #: the stack planner, kept between runs on the same task and data: each candidate probed once
        self._planner: Any = None

    def _ensure_pool(self, task: Task, data: TaskData) -> ProcessPoolExecutor:
        key = (id(task), id(data))
        if self._pool is not None and self._key == key:
            return self._pool
        self.close()
        payload = dumps_payload(task, data)
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=_context(), initializer=_init_worker,
            initargs=(payload, self.threads, os.getpid()),
        )
        self._key, self._keep = key, (task, data)
        return self._pool

    def run(
        self, task: Task, data: TaskData, jobs: Sequence[Job], settings: TrainingSettings
    ) -> Iterator[Trained]:
        if not jobs:
            return
        pool = self._ensure_pool(task, data)
        if self._planner is None:
            from robustcli.execution.planning import StackPlanner

            self._planner = StackPlanner(max_stack=self.max_stack or settings.max_stack)
        units = plan_units(
            task, data, jobs, settings, engine=self.engine, workers=self.workers, max_stack=self.max_stack, split=self.split,
            planner=self._planner,
        )
        self.units = units
        pending: set[Future] = {pool.submit(_work, unit, settings) for unit in units}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield from future.result()
        finally:
            for future in pending:
                future.cancel()

    def prepare(self) -> None:
        """The workers start with the first run (they need the task and its data)."""

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self._key, self._keep, self._planner = None, None, None, None

    def __enter__(self) -> LocalPoolExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
