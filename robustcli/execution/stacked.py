"""The stacked executor: the instances of a candidate trained together as one stacked model.

Same interface as :class:`~robustcli.execution.inprocess.InProcessExecutor`. Jobs are grouped by
candidate (and training/test sizes); each group is trained by
:func:`~robustcli.training.stacked.iter_stacked` in stacks of at most ``max_stack`` instances,
and each result is yielded the moment its instance stops.

``mode="auto"`` (default) keeps the plain loop where stacking does not pay or cannot work:

* a group of a single instance (nothing to stack);
* a model that does not train under vmap (probed once per candidate with
  :func:`~robustcli.training.stacked.check_stackable`), or a task whose tags say
  ``supports_stacking=False``;
* on the CPU, batch sizes of at least ``cpu_plain_batch`` (default 256: measured in
  ``benchmarks/train_throughput.py``, see ``CPU_PLAIN_BATCH``).

``mode="always"`` stacks every group it can (still falling back for unstackable models).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

from robustcli.config import TrainingSettings
from robustcli.task import Candidate, Task, TaskData

__all__ = ["CPU_PLAIN_BATCH", "StackedExecutor"]

#: on the CPU, batches this large train as fast one instance at a time (the stacked convolutions
#: are compute-bound there and stacking only adds memory traffic); see the module docstring
CPU_PLAIN_BATCH = 256


class StackedExecutor:
    """Trains (candidate, spec) jobs as stacks and yields (candidate, result) as each finishes."""

    name = "stacked"

    def __init__(
        self,
        max_stack: int = 64,
        mode: Literal["auto", "always"] = "auto",
        *,
        cpu_plain_batch: int | None = CPU_PLAIN_BATCH,
        compact: bool = True,
    ) -> None:
        if max_stack < 1:
            raise ValueError(f"max_stack must be >= 1, got {max_stack}")
        if mode not in ("auto", "always"):
            raise ValueError(f"mode must be 'auto' or 'always', got {mode!r}")
        self.max_stack = int(max_stack)
        self.mode = mode
        self.cpu_plain_batch = cpu_plain_batch
        self.compact = compact
        self._unstackable: dict[str, str | None] = {}
        #: (candidate id, engine, instances) per group, for logs and tests
        self.decisions: list[tuple[str, str, int]] = []

    def _engine(self, task: Task, data: TaskData, candidate: Candidate, count: int, settings: TrainingSettings) -> str:
        from robustcli.training.instance import resolve_device
        from robustcli.training.stacked import check_stackable

        if candidate.id not in self._unstackable:
            self._unstackable[candidate.id] = check_stackable(task, candidate, data)
        if self._unstackable[candidate.id] is not None:
            return "plain"
        if self.mode == "always":
            return "stacked"
        if count < 2:
            return "plain"
        batch = int(candidate.params.get("batch_size", 64))
        on_cpu = resolve_device(settings.device).type == "cpu"
        if on_cpu and self.cpu_plain_batch is not None and batch >= self.cpu_plain_batch:
            return "plain"
        return "stacked"

    def why_plain(self, candidate_id: str) -> str | None:
        """Why a candidate's model could not be stacked (None if it could, or was not probed)."""
        return self._unstackable.get(candidate_id)

    def run(
        self, task: Task, data: TaskData, jobs: Sequence[tuple[Candidate, Any]], settings: TrainingSettings
    ) -> Iterator[tuple[Candidate, Any]]:
        from robustcli.training.instance import train_instance
        from robustcli.training.stacked import iter_stacked

        groups: dict[tuple[str, int, int | None], list[tuple[Candidate, Any]]] = {}
        for candidate, spec in jobs:
            groups.setdefault((candidate.id, spec.train_size, spec.test_size), []).append((candidate, spec))
        for group in groups.values():
            candidate = group[0][0]
            engine = self._engine(task, data, candidate, len(group), settings)
            self.decisions.append((candidate.id, engine, len(group)))
            if engine == "plain":
                for cand, spec in group:
                    yield cand, train_instance(task, cand, data, spec, settings)
                continue
            for chunk in _balanced_chunks(group, self.max_stack):
                if len(chunk) == 1 and self.mode == "auto":
                    cand, spec = chunk[0]
                    yield cand, train_instance(task, cand, data, spec, settings)
                    continue
                specs = [spec for _, spec in chunk]
                for result in iter_stacked(task, candidate, data, specs, settings, compact=self.compact):
                    yield candidate, result


def _balanced_chunks(items: list[Any], most: int) -> list[list[Any]]:
    """``items`` in order, cut into the fewest chunks of at most ``most``, of near-equal sizes
    (65 jobs with most=64 make stacks of 33 and 32, not 64 and 1)."""
    count = -(-len(items) // most)
    size, extra = divmod(len(items), count)
    out, lo = [], 0
    for i in range(count):
        hi = lo + size + (1 if i < extra else 0)
        out.append(items[lo:hi])
        lo = hi
    return out
