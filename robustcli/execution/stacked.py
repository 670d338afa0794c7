"""The stacked executor: instances that can share a stack are trained together as one stacked model.

Same interface as :class:`~robustcli.execution.inprocess.InProcessExecutor`. Jobs are grouped by
*stack signature* (:func:`~robustcli.execution.planning.stack_signature`): the candidate's parameters other than the
per-instance optimiser settings (``lr``, ``weight_decay``, ``momentum``), plus the training and
test sizes. So a group holds the instances of one candidate (``robust assess``), and also one
instance each of candidates that differ only in those settings (a step of ``robust select``:
on the paper's grid, 12 candidates share each architecture, optimiser and batch size). Each
group is trained by :func:`~robustcli.training.stacked.iter_stacked` in stacks of near-equal
sizes, in the order the jobs came, and each result is yielded the moment its instance stops.
A result records its stack (``result.stack``: the members' instance indices, prefixed with
``candidate_id:`` for members of another candidate) so that ``robust reproduce`` can rebuild it.

Stack size. On a GPU, up to ``max_stack`` (default 64). On the CPU, a stack holds about
``cpu_stack_examples`` (4096) training examples per step: ``4096 / batch`` instances, at least
``cpu_min_stack`` (8) and at most ``max_stack``, i.e. 64 for the calorimeter nets at batch 16-64
and 16 at batch 256; models with small activations may go further, up to
``cpu_cache_bytes / (batch x activation bytes per example)`` (the synthetic MLP: 64 at any
batch). Measured on a 2-core VM, Model 2 (per instance against the plain loop, with freed memory
kept in the process, see :mod:`robustcli.training.cpu_memory`): K=64 3.97x vs K=8 3.32x at batch
16, equal within noise at 32-64, K=8 2.97x vs K=64 2.82x at 256.

``mode="auto"`` (default) keeps the plain loop where stacking cannot work or does not pay:

* a single instance (nothing to share: measured 0.5x the plain loop for the MLP), except, on the
  CPU, one of a convolutional model at batch >= 64, which the stacked path's exact rewrites and
  evaluation make 1.6-2.2x faster even alone (:meth:`~robustcli.execution.planning.StackPlanner._lone_pays`);
* a model that does not train under vmap (probed once per signature with
  :func:`~robustcli.execution.planning.unstackable_reason`; :meth:`~robustcli.execution.planning.StackPlanner.why_plain` says why),
  or a task whose tags say ``supports_stacking=False``.

No batch size was measured slower stacked than plain (batch 256 included), so there is no
batch-size fallback by default; ``plain_batch`` sets one. ``mode="always"`` stacks even single
instances (unstackable models still fall back).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

from robustcli.config import TrainingSettings
from robustcli.execution.planning import (
    CPU_CACHE_BYTES,
    CPU_LONE_CONV_BATCH,
    CPU_MIN_STACK,
    CPU_STACK_EXAMPLES,
    StackPlanner,
    Unit,
    plan_units,
)
from robustcli.execution.protocol import Job, Trained
from robustcli.task import Candidate, Task, TaskData

__all__ = ["StackedExecutor", "stack_members"]

def stack_members(own: Candidate, members: Sequence[Job]) -> tuple[str, ...]:
    """The ``robust.stack`` entries of an instance of ``own`` trained in a stack of ``members``."""
    return tuple(str(s.index) if c.id == own.id else f"{c.id}:{s.index}" for c, s in members)


class StackedExecutor:
    """Trains (candidate, spec) jobs as stacks and yields (candidate, result) as each finishes; what
    to stack is its :class:`~robustcli.execution.planning.StackPlanner`'s call (``planner``)."""

    name = "stacked"

    def __init__(
        self,
        max_stack: int = 64,
        mode: Literal["auto", "always"] = "auto",
        *,
        cpu_cache_bytes: int = CPU_CACHE_BYTES,
        cpu_min_stack: int = CPU_MIN_STACK,
        cpu_stack_examples: int = CPU_STACK_EXAMPLES,
        plain_batch: int | None = None,
        cpu_lone_conv_batch: int = CPU_LONE_CONV_BATCH,
        compact: bool = True,
    ) -> None:
        self.planner = StackPlanner(
            max_stack, mode, cpu_cache_bytes=cpu_cache_bytes, cpu_min_stack=cpu_min_stack,
            cpu_stack_examples=cpu_stack_examples, plain_batch=plain_batch, cpu_lone_conv_batch=cpu_lone_conv_batch,
        )
        self.compact = compact

    @property
    def decisions(self) -> list[tuple[str, str, int, int]]:
        """The planner's (candidate id, engine, instances, stack size) per group planned so far."""
        return self.planner.decisions

    def prepare(self) -> None:
        """Nothing to connect to: trains in this process."""

    def close(self) -> None:
        """Nothing to shut down."""

    def run(self, task: Task, data: TaskData, jobs: Sequence[Job], settings: TrainingSettings) -> Iterator[Trained]:
        """Train the units :func:`~robustcli.execution.planning.plan_units` cuts, in the order the jobs came."""
        for unit in plan_units(task, data, jobs, settings, planner=self.planner):
            yield from self.run_unit(task, data, unit, settings)

    def run_unit(self, task: Task, data: TaskData, unit: Unit, settings: TrainingSettings) -> Iterator[Trained]:
        """Train one unit: a stack (``iter_stacked``) or one instance in the plain loop."""
        from robustcli.training.instance import train_instance
        from robustcli.training.stacked import iter_stacked

        if unit.engine == "plain":
            for cand, spec in unit.jobs:
                result = train_instance(task, cand, data, spec, settings)
                if unit.plain_reason is not None:
                    result.plain_reason = unit.plain_reason
                yield cand, result
            return
        cands = [c for c, _ in unit.jobs]
        specs = [s for _, s in unit.jobs]
        for pos, result in iter_stacked(task, cands, data, specs, settings, compact=self.compact, fast_layout=True):
            # what `robust reproduce` needs to rebuild the very same stack
            result.engine, result.stack = "stacked", stack_members(cands[pos], unit.jobs)
            yield cands[pos], result
