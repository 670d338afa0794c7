"""The installed tasks: their listing (``robust tasks``), one in detail (``robust tasks show``) and
its conformance checks (``robust check``). Light on purpose: listing tasks imports no numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from robustcli.results import TableResult

__all__ = ["TaskDetail", "TaskInfo", "check_task", "describe_task", "list_tasks"]


@dataclass(repr=False)
class TaskInfo(TableResult):
    """An installed task (``list_tasks``): its entry point, status (``ok``, ``broken``) and size."""

    name: str
    distribution: str
    version: str
    entry_point: str
    status: Literal["ok", "broken"]
    description: str
    candidates: int | None
    warning: str | None = None
    error: str | None = None

    def summary_line(self) -> str:
        what = self.description if self.status == "ok" else f"broken: {self.error}"
        return f"{self.name} ({self.distribution} {self.version}): {what}"


def list_tasks() -> list[TaskInfo]:
    """The installed tasks (``robust tasks``): name, description, distribution and version,
    search-space size; a plugin that cannot load is listed with its error, never raised.

    Example: ``[t.name for t in list_tasks() if t.status == "ok"]``"""
    from robustcli.plugins import task_summaries

    return [TaskInfo(**row) for row in task_summaries()]


@dataclass
class TaskDetail:
    """An installed task: its loss, search space, named candidates and baselines (``robust tasks show``)."""

    name: str
    description: str
    #: "DISTRIBUTION VERSION"
    distribution: str
    loss: dict[str, Any]
    candidates: int
    default_train_size: int | None
    #: (name, id, parameters) of each named candidate
    named: list[tuple[str, str, dict[str, Any]]]
    #: a baseline's name -> its description
    baselines: dict[str, str]
    tags: dict[str, Any]
    #: the task's own lines (``Task.describe()``)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """What ``robust tasks show --json`` prints."""
        return {
            "name": self.name,
            "description": self.description,
            "distribution": self.distribution,
            "loss": self.loss,
            "candidates": self.candidates,
            "default_train_size": self.default_train_size,
            "named_candidates": {n: {"id": cid, **params} for n, cid, params in self.named},
            "baselines": self.baselines,
            "tags": self.tags,
            **self.details,
        }


def describe_task(name: str, where: str = "robust tasks show") -> TaskDetail:
    """The installed task ``name`` in detail (unknown or broken: one line naming it, ``where`` said)."""
    from robustcli.plugins import build_task, load_task_class

    cls, info = load_task_class(name, where=where)
    task = build_task(cls, info)
    space = task.search_space()
    return TaskDetail(
        name=name,
        description=cls.description,
        distribution=f"{info.distribution} {info.version}",
        loss={"name": cls.loss.name, "formula": cls.loss.formula, "lower_is_better": cls.loss.lower_is_better},
        candidates=len(space),
        default_train_size=cls.default_train_size,
        named=[(n, c.id, dict(c.params)) for n, c in space.named.items()],
        baselines={n: b.description for n, b in task.baselines().items()},
        tags=vars(cls.tags) if hasattr(cls.tags, "__dict__") else {},
        details=dict(task.describe()),
    )


def check_task(task: Any, *, sample: int = 3, seed: int = 0) -> list[Any]:
    """The conformance kit (:func:`robustcli.testing.check_task`) on a built task, every check's
    result returned, none raised."""
    from robustcli.testing import check_task as run_checks

    return run_checks(task, sample=sample, seed=seed, raise_on_failure=False)
