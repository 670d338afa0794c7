"""The one planner of stacks: how a batch of (candidate, spec) jobs is cut into units of work.

Every executor trains what :func:`plan_units` plans: the in-process stacked engine runs the units
one after another in the order the jobs came; the local pool and Ray hand them to workers, the
biggest first. So a fix to how stacks are cut is made once, and a unit trained in a worker is
bitwise the stack the in-process engine would train (with the same thread count).

What to stack is the :class:`StackPlanner`'s call: it probes each stack signature once (does the
model train under vmap, how large are its activations) and keeps the probes for the runs it plans.

A unit is ``(engine, size, jobs, plain_reason)``: ``"stacked"`` with its stack size, or
``"plain"`` (one instance) with why its model trains in the plain loop.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from robustcli.config import EngineName, TrainingSettings
from robustcli.execution.protocol import Job
from robustcli.task import Candidate, Task, TaskData
from robustcli.training import PER_INSTANCE_KEYS

__all__ = [
    "CPU_CACHE_BYTES", "CPU_LONE_CONV_BATCH", "CPU_MIN_STACK", "CPU_STACK_EXAMPLES", "StackPlanner", "Unit",
    "balanced_chunks", "group_jobs", "plan_units", "stack_signature", "unstackable_reason",
]

#: the CPU working-set target of one stacked step (activations of all its instances and examples)
CPU_CACHE_BYTES = 8 << 20
#: the smallest CPU stack the size rule may choose
CPU_MIN_STACK = 8
#: training examples (instances x batch) of one CPU stack's step
CPU_STACK_EXAMPLES = 4096
#: the batch size from which a lone instance of a convolutional model trains as a stack of one on the CPU
CPU_LONE_CONV_BATCH = 64


def stack_signature(candidate: Candidate, spec: Any) -> str:
    """What instances must share to train in one stack: every candidate parameter but
    :data:`PER_INSTANCE_KEYS`, and the training and test sizes."""
    arch = {k: v for k, v in candidate.params.items() if k not in PER_INSTANCE_KEYS}
    return json.dumps([arch, spec.train_size, spec.test_size], sort_keys=True, default=str)


def group_jobs(jobs: Sequence[Job]) -> list[list[Job]]:
    """``jobs`` grouped by :func:`stack_signature`, groups and members in the order they came
    (so the stacks, hence every floating-point path, are a function of the request)."""
    groups: dict[str, list[Job]] = {}
    for candidate, spec in jobs:
        groups.setdefault(stack_signature(candidate, spec), []).append((candidate, spec))
    return list(groups.values())


#: check_stackable's words when the stacked copy of a model disagrees with the model: its probe
#: cannot tell why, so :func:`unstackable_reason` looks again
_DISAGREES = "does not predict what each model predicts alone"


def unstackable_reason(task: Task, candidate: Candidate, data: TaskData) -> str | None:
    """None when ``candidate``'s model trains in a stack, else why not, in words fit for a run's
    ``robust.plain_reason`` and a conformance check (no command-line advice)."""
    from robustcli.training.stacked import check_stackable

    why = check_stackable(task, candidate, data)
    if why is None or _DISAGREES not in why:
        return why
    return _vmap_cause(task, candidate, data)


def _vmap_cause(task: Task, candidate: Candidate, data: TaskData) -> str:
    """Why two instances of the model disagree with their stacked copy: the error vmap raises on the
    plain model (data-dependent control flow...), or else state vmap does not see."""
    import copy

    import torch
    from torch.func import functional_call, stack_module_state, vmap

    try:
        with torch.random.fork_rng(devices=[]):
            models = []
            for seed in (1, 2):
                torch.manual_seed(seed)
                models.append(task.build_model(candidate))
                task.init_weights(models[-1])
            params, buffers = stack_module_state(models)
            base = copy.deepcopy(models[0]).to("meta")
            run = lambda p, b, x: functional_call(base, (p, b), (x,))  # noqa: E731
            vmap(run, in_dims=(0, 0, None))(params, buffers, data.pool_x[:2])
    except Exception as exc:  # noqa: BLE001 - the error is the finding
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if "data-dependent control flow" in text:
            return "data-dependent control flow in the model (a Python branch on a tensor's value), which vmap cannot trace"
        return f"the model does not run under vmap ({type(exc).__name__}: {text})"
    return (
        "the stacked copy of the model predicts otherwise than each model alone: state outside its parameters "
        "and buffers (e.g. a plain tensor attribute)"
    )


class StackPlanner:
    """Decides how instances train (a stack of what size, or the plain loop) and owns the probes
    behind the decision: one per stack signature, kept for the planner's life, so a candidate is
    probed once however many runs it plans."""

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
    ) -> None:
        if max_stack < 1:
            raise ValueError(f"max_stack must be >= 1, got {max_stack}")
        if mode not in ("auto", "always"):
            raise ValueError(f"mode must be 'auto' or 'always', got {mode!r}")
        self.max_stack = int(max_stack)
        self.mode = mode
        self.cpu_cache_bytes = int(cpu_cache_bytes)
        self.cpu_min_stack = int(cpu_min_stack)
        self.cpu_stack_examples = int(cpu_stack_examples)
        self.plain_batch = plain_batch
        self.cpu_lone_conv_batch = int(cpu_lone_conv_batch)
        self._probe: dict[str, tuple[str | None, int, bool]] = {}
        #: (candidate id, engine, instances, stack size) per group, for logs and tests
        self.decisions: list[tuple[str, str, int, int]] = []

    def _probed(self, task: Task, data: TaskData, candidate: Candidate) -> tuple[str | None, int, bool]:
        """(why it cannot stack or None, activation bytes per example, has 2-d convolutions)."""
        import torch

        from robustcli.training.stacked import activation_bytes_per_example

        if candidate.id not in self._probe:
            why = unstackable_reason(task, candidate, data)
            size = activation_bytes_per_example(task, candidate, data) if why is None else 0
            with torch.random.fork_rng(devices=[]):
                conv = any(isinstance(m, torch.nn.Conv2d) for m in task.build_model(candidate).modules())
            self._probe[candidate.id] = (why, size, conv)
        return self._probe[candidate.id]

    def _lone_pays(self, conv: bool, batch: int, device: Any) -> bool:
        """Whether a lone instance trains faster as a stack of one: on the CPU, a convolutional
        model from batch ``cpu_lone_conv_batch`` on (the stacked model's exact rewrites and its
        evaluation; measured for Models 1 and 2: 1.6-2.2x at batch 64-256, 0.8-1.3x at 16-32,
        and 0.5x for the synthetic MLP, which has nothing to rewrite)."""
        return conv and device.type == "cpu" and batch >= self.cpu_lone_conv_batch

    def plan(
        self, task: Task, data: TaskData, candidate: Candidate, count: int, settings: TrainingSettings
    ) -> tuple[str, int]:
        """("stacked" or "plain", stack size) for ``count`` instances of ``candidate``."""
        from robustcli.training.instance import resolve_device

        why, act_bytes, conv = self._probed(task, data, candidate)
        if why is not None:  # e.g. a learning-rate schedule (check_stackable)
            return "plain", 1
        batch = int(candidate.params.get("batch_size", 64))
        most = self.max_stack
        device = resolve_device(settings.device)
        if device.type == "cpu":
            fit = max(self.cpu_stack_examples // batch, self.cpu_cache_bytes // max(1, batch * act_bytes))
            most = max(1, min(self.max_stack, max(self.cpu_min_stack, fit)))
        if self.mode == "always":
            return "stacked", min(most, count)
        if self.plain_batch is not None and batch >= self.plain_batch:
            return "plain", 1
        if count < 2:
            return ("stacked", 1) if self._lone_pays(conv, batch, device) else ("plain", 1)
        return "stacked", min(most, count)

    def why_plain(self, candidate_id: str) -> str | None:
        """Why a candidate's model could not be stacked (None if it could, or was not probed)."""
        probe = self._probe.get(candidate_id)
        return None if probe is None else probe[0]

    def plain_reason(self, candidate: Candidate) -> str:
        """Why instances of a probed ``candidate`` that :meth:`plan` sent to the plain loop train
        there: the runs' ``robust.plain_reason``, a stack of one included."""
        why = self.why_plain(candidate.id)
        if why is not None:
            return why
        batch = int(candidate.params.get("batch_size", 64))
        if self.plain_batch is not None and batch >= self.plain_batch:
            return f"batch size {batch} trains faster in the plain loop (plain_batch {self.plain_batch})"
        return "a lone instance: a stack of one trains slower than the plain loop for this model"

    def share_probe(self, group: Sequence[Job]) -> None:
        """One probe per stack signature speaks for every candidate of its group."""
        first = group[0][0]
        for cand, _ in group[1:]:
            self._probe.setdefault(cand.id, self._probe[first.id])


class Unit(NamedTuple):
    """One unit of work: trained as one stack, or as one instance in the plain loop."""

    engine: str
    size: int
    jobs: list[Job]
    plain_reason: str | None


def plan_units(
    task: Task,
    data: TaskData,
    jobs: Sequence[Job],
    settings: TrainingSettings,
    *,
    engine: EngineName = "stacked",
    workers: int = 1,
    max_stack: int | None = None,
    split: bool = True,
    planner: StackPlanner | None = None,
) -> list[Unit]:
    """Cut ``jobs`` into units.

    ``engine="plain"``: one instance per unit. ``engine="stacked"``: jobs grouped by stack signature,
    each group planned by ``planner`` (a :class:`StackPlanner`, which keeps its probes and records its
    decisions; a new one when None) and cut into near-equal stacks. With ``workers > 1`` and
    ``split``, fewer stacks than workers cap the stack size so that every worker gets one, and the
    units come biggest first (the last worker is then not left with the longest)."""
    if engine not in ("stacked", "plain"):
        raise ValueError(f"engine must be 'stacked' or 'plain', got {engine!r}")
    if engine == "plain":
        return [Unit("plain", 1, [job], None) for job in jobs]
    planner = planner or StackPlanner(max_stack=max_stack or settings.max_stack)
    groups = group_jobs(jobs)
    plans = [planner.plan(task, data, group[0][0], len(group), settings) for group in groups]
    for group in groups:
        planner.share_probe(group)  # one probe per signature speaks for the whole group
    if split and workers > 1:
        plans = _cap_for_workers(groups, plans, workers)
    out: list[Unit] = []
    for group, (group_engine, most) in zip(groups, plans):
        first = group[0][0]
        planner.decisions.append((first.id, group_engine, len(group), most))
        if group_engine == "plain":
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
