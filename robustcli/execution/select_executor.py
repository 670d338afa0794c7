"""Which executor a study's training settings ask for: where (``executor``) x how (``engine``).

``executor``: ``inprocess`` (this process), ``local`` (a pool of worker processes, one torch thread
each; ``workers`` of them, all CPUs by default) or ``ray`` (Ray tasks on a local Ray or the cluster
at ``ray_address``). ``engine``: ``stacked`` or ``plain``, what each process runs.
"""

from __future__ import annotations

from typing import Any

from robustcli.errors import InputError
from robustcli.execution.protocol import TrainingExecutor

__all__ = ["EXECUTORS", "make_executor"]

EXECUTORS = ("inprocess", "local", "ray")


def make_executor(settings: Any) -> TrainingExecutor:
    """The executor for ``settings`` (a :class:`StudySettings` or its :class:`TrainingSettings`)."""
    t = getattr(settings, "training", settings)
    kind = getattr(t, "executor", "inprocess") or "inprocess"
    engine = getattr(t, "engine", "stacked")
    max_stack = getattr(t, "max_stack", 64)
    if kind == "inprocess":
        if engine == "plain":
            from robustcli.execution.inprocess import InProcessExecutor

            return InProcessExecutor()
        from robustcli.execution.stacked import StackedExecutor

        return StackedExecutor(max_stack=max_stack)
    if kind == "local":
        from robustcli.execution.pool import LocalPoolExecutor

        threads = getattr(t, "threads", None) or 1
        return LocalPoolExecutor(getattr(t, "workers", None), engine, threads=threads, max_stack=max_stack)
    if kind == "ray":
        from robustcli.execution.ray_executor import RayExecutor, import_ray

        import_ray()  # refuse now, before anything is trained or written
        cpus = getattr(t, "threads", None) or 1
        gpus = 0.25 if getattr(t, "device", "cpu") == "cuda" else 0
        return RayExecutor(getattr(t, "ray_address", None), cpus, gpus, engine, max_stack=max_stack)
    raise InputError(f"unknown executor {kind!r} (valid: {', '.join(EXECUTORS)})")
