"""The one planner of stacks: how a batch of (candidate, spec) jobs is cut into units of work.

Every executor trains what :func:`plan_units` plans: the in-process stacked engine runs the units
one after another in the order the jobs came; the local pool and Ray hand them to workers, the
biggest first. So a fix to how stacks are cut is made once, and a unit trained in a worker is
bitwise the stack the in-process engine would train (with the same thread count).

A unit is ``(engine, size, jobs, plain_reason)``: ``"stacked"`` with its stack size, or
``"plain"`` (one instance) with why its model trains in the plain loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from robustcli.config import TrainingSettings
from robustcli.task import Candidate, Task, TaskData

__all__ = ["Unit", "balanced_chunks", "plan_units"]

Inner = Literal["stacked", "plain"]


class Unit(NamedTuple):
    """One unit of work: trained as one stack, or as one instance in the plain loop."""

    engine: str
    size: int
    jobs: list[tuple[Candidate, Any]]
    plain_reason: str | None


def plan_units(
    task: Task,
    data: TaskData,
    jobs: Sequence[tuple[Candidate, Any]],
    settings: TrainingSettings,
    *,
    inner: Inner = "stacked",
    workers: int = 1,
    max_stack: int | None = None,
    split: bool = True,
    planner: Any = None,
) -> list[Unit]:
    """Cut ``jobs`` into units.

    ``inner="plain"``: one instance per unit. ``inner="stacked"``: jobs grouped by stack signature,
    each group planned by ``planner`` (a :class:`~robustcli.execution.stacked.StackedExecutor`, whose
    probes and decisions it records) and cut into near-equal stacks. With ``workers > 1`` and
    ``split``, fewer stacks than workers cap the stack size so that every worker gets one, and the
    units come biggest first (the last worker is then not left with the longest)."""
    from robustcli.execution.stacked import StackedExecutor, group_jobs

    if inner not in ("stacked", "plain"):
        raise ValueError(f"inner must be 'stacked' or 'plain', got {inner!r}")
    if inner == "plain":
        return [Unit("plain", 1, [job], None) for job in jobs]
    planner = planner or StackedExecutor(max_stack=max_stack or settings.max_stack)
    groups = group_jobs(jobs)
    plans = [planner.plan(task, data, group[0][0], len(group), settings) for group in groups]
    for group in groups:
        planner.share_probe(group)  # one probe per signature speaks for the whole group
    if split and workers > 1:
        plans = _cap_for_workers(groups, plans, workers)
    out: list[Unit] = []
    for group, (engine, most) in zip(groups, plans):
        first = group[0][0]
        planner.decisions.append((first.id, engine, len(group), most))
        if engine == "plain":
            why = planner.plain_reason(first)
            out.extend(Unit("plain", 1, [job], why) for job in group)
            continue
        # a chunk of one (a group of one, or max_stack=1) trains as a lone instance would
        lone = planner.plan(task, data, first, 1, settings)[0]
        for chunk in balanced_chunks(group, most):
            if len(chunk) == 1 and lone == "plain":
                out.append(Unit("plain", 1, chunk, planner.plain_reason(first)))
            else:
                out.append(Unit("stacked", len(chunk), chunk, None))
    if workers > 1:
        out.sort(key=lambda unit: -len(unit.jobs))
    return out


def _cap_for_workers(groups: list[list[Any]], plans: list[tuple[str, int]], workers: int) -> list[tuple[str, int]]:
    """Fewer units than workers: the stack size capped so that every worker gets a unit."""
    stacked = [(len(g), most) for g, (engine, most) in zip(groups, plans) if engine == "stacked"]
    stacked_jobs = sum(n for n, _ in stacked)
    stacks = sum(-(-n // most) for n, most in stacked)
    plain_units = sum(len(g) for g, (engine, _) in zip(groups, plans) if engine != "stacked")
    if not stacked_jobs or stacks + plain_units >= workers:
        return plans
    cap = max(2, -(-stacked_jobs // max(1, workers - plain_units)))
    return [(engine, min(most, cap)) if engine == "stacked" else (engine, most) for engine, most in plans]


def balanced_chunks(items: list[Any], most: int) -> list[list[Any]]:
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
