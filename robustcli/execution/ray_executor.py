"""The Ray executor: units of jobs as Ray tasks, on a local Ray or an existing cluster.

Same interface as :class:`~robustcli.execution.inprocess.InProcessExecutor`. The jobs are cut into
units by :func:`~robustcli.execution.pool.plan_units` (the stacks of a candidate's instances, as
the in-process stacked engine would train them); each unit is one ``@ray.remote`` task that
trains its stack inside the worker, and results come back with ``ray.wait`` in completion order.
Only this (coordinating) process writes to MLflow.

Packing many stacked instances per GPU: ``num_gpus_per_task=0.25`` lets four stacks share a GPU
(``--device cuda``); on CPUs ``num_cpus_per_task`` is also the worker's torch thread count.

Ray is imported lazily and started on the first run: ``ray.init()`` (a local Ray using this
machine's cores) unless ``address`` is given (``"auto"`` for the cluster this node belongs to,
``"ray://host:10001"`` for a remote one). An already initialised Ray is used as it is. On a
cluster, every node needs ``robustcli`` and the task's plugin installed (or a ``runtime_env``).
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from robustcli.config import EngineName, TrainingSettings
from robustcli.errors import InputError
from robustcli.execution.protocol import Job, Trained
from robustcli.task import Task, TaskData

if TYPE_CHECKING:
    from robustcli.execution.planning import Unit

__all__ = ["RayExecutor", "import_ray"]

RAY_MISSING = "--executor ray needs Ray: pip install 'robustcli[ray]'"


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise InputError(RAY_MISSING) from None
    return ray


# -- the worker side: the task and its data, unpickled once per worker process and run -----------
_CACHE: dict[str, tuple[Task, TaskData]] = {}


def _ray_unit(token: str, payload_ref: list[Any], unit: Unit, settings: TrainingSettings, threads: int) -> list[Trained]:
    import ray
    import torch

    from robustcli.execution.pool import run_unit

    torch.set_num_threads(max(1, threads))
    if token not in _CACHE:
        _CACHE.clear()  # one study at a time per worker: do not hoard old data sets
        _CACHE[token] = pickle.loads(ray.get(payload_ref[0]))
    task, data = _CACHE[token]
    return run_unit(task, data, unit, settings)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once an address where nothing listens (Ray itself retries for minutes)."""
    import socket

    if address in ("auto", "local"):
        return  # Ray finds (or starts) the local cluster itself, and says so at once when it cannot
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InputError(f"--address {address!r}: expected host:port, ray://host:port, auto or local")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise InputError(f"--address {address!r}: nothing answers at {host}:{port} ({exc.strerror or exc})") from None


class RayExecutor:
    """Trains (candidate, spec) jobs as Ray tasks and yields (candidate, result) as each unit finishes."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus_per_task: float = 1,
        num_gpus_per_task: float = 0,
        engine: EngineName = "stacked",
        *,
        max_stack: int | None = None,
        split: bool = True,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if engine not in ("stacked", "plain"):
            raise ValueError(f"engine must be 'stacked' or 'plain', got {engine!r}")
        self.address = address
        self.num_cpus_per_task = float(num_cpus_per_task)
        self.num_gpus_per_task = float(num_gpus_per_task)
        self.engine = engine
        self.max_stack = max_stack
        self.split = split
        self.init_kwargs = dict(init_kwargs or {})
        self._remote: Any = None
        self._payload: tuple[int, int, str, Any] | None = None
        self._keep: tuple[Task, TaskData] | None = None
        #: the units of the last run, for logs and tests
        self.units: list[Unit] = []

    def _ray(self) -> ModuleType:
        ray = import_ray()
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
            address = self.address or None
            if address is not None:
                _check_reachable(address)
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise InputError(f"--address {address!r}: cannot start or reach Ray: {first}") from None
        if self._remote is None:
            self._remote = ray.remote(num_cpus=self.num_cpus_per_task, num_gpus=self.num_gpus_per_task)(_ray_unit)
        return ray

    def prepare(self) -> None:
        """Start or reach Ray and, on a local Ray, check that a task fits on its node, before
        anything is trained or written (a task asking for more CPUs than any node has would
        wait forever)."""
        ray = self._ray()
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
        # only a local Ray is known not to grow: a cluster may autoscale to fit the task
        if self.address in (None, "", "local") and self.num_cpus_per_task > most_cpus:
            raise InputError(
                f"--threads {self.num_cpus_per_task:g}: each Ray task asks for {self.num_cpus_per_task:g} CPUs and "
                f"the largest node of the Ray cluster has {most_cpus:g}"
            )
        self._workers(ray)  # refuses GPU tasks on a cluster without GPUs

    def close(self) -> None:
        """Let go of the data put in Ray's object store (Ray itself stays up for the process)."""
        self._payload = self._keep = None

    def _workers(self, ray: ModuleType) -> int:
        """How many units can run at once on the cluster as it is now."""
        resources = ray.cluster_resources()
        if self.num_gpus_per_task > 0 and not resources.get("GPU", 0):
            raise InputError(
                f"--executor ray with {self.num_gpus_per_task:g} GPU per task: the Ray cluster has no GPU "
                "(use --device cpu, or a cluster with GPUs)"
            )
        slots = resources.get("CPU", 1) / self.num_cpus_per_task if self.num_cpus_per_task > 0 else 1
        if self.num_gpus_per_task > 0:
            slots = min(slots, resources.get("GPU", 0) / self.num_gpus_per_task)
        return max(1, int(slots))

    def run(
        self, task: Task, data: TaskData, jobs: Sequence[Job], settings: TrainingSettings
    ) -> Iterator[Trained]:
        from robustcli.execution.pool import dumps_payload, plan_units

        if not jobs:
            return
        ray = self._ray()
        units = plan_units(
            task,
            data,
            jobs,
            settings,
            engine=self.engine,
            workers=self._workers(ray),
            max_stack=self.max_stack,
            split=self.split,
        )
        self.units = units
        if self._payload is None or self._payload[:2] != (id(task), id(data)):
            ref = ray.put(dumps_payload(task, data))
            self._payload = (id(task), id(data), uuid.uuid4().hex, ref)
            self._keep = (task, data)
        _, _, token, ref = self._payload
        threads = max(1, int(self.num_cpus_per_task))
        pending = [self._remote.remote(token, [ref], unit, settings, threads) for unit in units]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for result in ray.get(done):
                    yield from result
        finally:
            for left in pending:
                ray.cancel(left)
