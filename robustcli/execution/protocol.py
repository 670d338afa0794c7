"""The contract of a training executor: where and how a batch of instances trains.

Not to be confused with the selection loop's :class:`robustcli.selection.LossSource`, which
asks for losses by (candidate id, index) and may replay a table instead of training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from robustcli.config import TrainingSettings
from robustcli.task import Candidate, Task, TaskData

if TYPE_CHECKING:  # torch: the executors import training lazily
    from robustcli.training.instance import InstanceResult, InstanceSpec

__all__ = ["Job", "Trained", "TrainingExecutor"]

#: one instance to train: the candidate and its :class:`~robustcli.training.instance.InstanceSpec`
Job = tuple[Candidate, "InstanceSpec"]
#: one instance trained: the candidate and its :class:`~robustcli.training.instance.InstanceResult`
Trained = tuple[Candidate, "InstanceResult"]


@runtime_checkable
class TrainingExecutor(Protocol):
    """Trains jobs (in this process, a pool of processes, a Ray cluster) and yields each
    ``(candidate, InstanceResult)`` as it finishes, in any order. Stacks are cut by
    :func:`robustcli.execution.planning.plan_units`, whichever executor runs them."""

    #: inprocess, stacked (in process, the stacked engine), local, ray or auto: for people; no run
    #: records it (an instance's run records its engine, ``robust.engine``)
    name: str

    def prepare(self) -> None:
        """Refuse now what cannot train (an unreachable or too small cluster), before anything is written."""

    def run(self, task: Task, data: TaskData, jobs: Sequence[Job], settings: TrainingSettings) -> Iterator[Trained]:
        """Train ``jobs``; yield ``(candidate, result)`` as each finishes (a failed instance is a result)."""

    def close(self) -> None:
        """Let go of workers or connections (the executor may be used again: it starts them anew)."""
