"""Makes the executor a study's training settings ask for: where (``executor``) x how (``engine``).

``executor``: ``auto`` (the default: one torch thread per process, the local pool when a run has
independent work, else this process; see :mod:`robustcli.execution.auto`), ``inprocess`` (this
process, a thread per available core unless ``threads``), ``local`` (a pool of worker
processes, one torch thread each; ``workers`` of them, all available cores by default) or ``ray``
(Ray tasks on a local Ray or the cluster at ``ray_address``). ``engine``: ``stacked`` or
``plain``, what each process runs. ``threads`` without an ``executor`` means this process with
that many torch threads (a thread count is a choice of this process).
"""

from __future__ import annotations

from robustcli.config import StudySettings, TrainingSettings
from robustcli.errors import InputError
from robustcli.execution.inprocess import in_process_executor
from robustcli.execution.protocol import TrainingExecutor

__all__ = ["EXECUTORS", "in_process_executor", "make_executor", "resolved_executor"]

EXECUTORS = ("auto", "inprocess", "local", "ray")


def resolved_executor(settings: StudySettings | TrainingSettings) -> str:
    """The name of the executor ``settings`` ask for (one of :data:`EXECUTORS`), ``auto`` with
    ``threads`` given being ``inprocess``."""
    t = getattr(settings, "training", settings)
    name = getattr(t, "executor", "auto") or "auto"
    if name == "auto" and getattr(t, "threads", None) is not None:
        return "inprocess"
    return name


def make_executor(settings: StudySettings | TrainingSettings) -> TrainingExecutor:
    """The executor for ``settings`` (a :class:`StudySettings` or its :class:`TrainingSettings`)."""
    t = getattr(settings, "training", settings)
    name = resolved_executor(t)
    engine = getattr(t, "engine", "stacked")
    max_stack = getattr(t, "max_stack", 64)
    if name == "auto":
        from robustcli.execution.auto import AutoExecutor

        return AutoExecutor(engine, max_stack=max_stack, workers=getattr(t, "workers", None))
    if name == "inprocess":
        return in_process_executor(engine, max_stack)
    if name == "local":
        from robustcli.execution.pool import LocalPoolExecutor

        threads = getattr(t, "threads", None) or 1
        return LocalPoolExecutor(getattr(t, "workers", None), engine, threads=threads, max_stack=max_stack)
    if name == "ray":
        from robustcli.execution.ray_executor import RayExecutor, import_ray

        import_ray()  # refuse now, before anything is trained or written
        cpus = getattr(t, "threads", None) or 1
        gpus = 0.25 if getattr(t, "device", "cpu") == "cuda" else 0
        return RayExecutor(getattr(t, "ray_address", None), cpus, gpus, engine, max_stack=max_stack)
    raise InputError(f"unknown executor {name!r} (valid: {', '.join(EXECUTORS)})")
