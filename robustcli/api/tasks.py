"""One installed task in detail (``robust tasks show``) and its conformance checks (``robust check``).

The listing of every installed task is :func:`robustcli.api.list_tasks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TaskDetail", "check_task", "describe_task"]


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
