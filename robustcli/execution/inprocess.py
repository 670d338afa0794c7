"""The in-process executor: instances one after another in this process (the plain loop)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from robustcli.config import EngineName, TrainingSettings
from robustcli.execution.protocol import Job, Trained, TrainingExecutor
from robustcli.task import Task, TaskData

__all__ = ["InProcessExecutor", "in_process_executor"]


class InProcessExecutor:
    """Trains (candidate, spec) jobs in order and yields (candidate, result) as each finishes."""

    name = "inprocess"

    def prepare(self) -> None:
        """Nothing to connect to: trains in this process."""

    def close(self) -> None:
        """Nothing to shut down."""

    def run(
        self, task: Task, data: TaskData, jobs: Sequence[Job], settings: TrainingSettings
    ) -> Iterator[Trained]:
        from robustcli.training.instance import train_instance

        for candidate, spec in jobs:
            yield candidate, train_instance(task, candidate, data, spec, settings)


def in_process_executor(engine: EngineName, max_stack: int) -> TrainingExecutor:
    """This process's executor for ``engine``: the plain loop, or stacks (also what the auto
    executor trains here when a run does not spread)."""
    if engine == "plain":
        return InProcessExecutor()
    from robustcli.execution.stacked import StackedExecutor

    return StackedExecutor(max_stack=max_stack)
