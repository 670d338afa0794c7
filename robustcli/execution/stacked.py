"""The stacked executor: instances that can share a stack are trained together as one stacked model.

Same interface as :class:`~robustcli.execution.inprocess.InProcessExecutor`. Jobs are grouped by
*stack signature* (:func:`stack_signature`): the candidate's parameters other than the
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
  evaluation make 1.6-2.2x faster even alone (:meth:`StackedExecutor._lone_pays`);
* a model that does not train under vmap (probed once per signature with
  :func:`unstackable_reason`; :meth:`StackedExecutor.why_plain` says why),
  or a task whose tags say ``supports_stacking=False``.

No batch size was measured slower stacked than plain (batch 256 included), so there is no
batch-size fallback by default; ``plain_batch`` sets one. ``mode="always"`` stacks even single
instances (unstackable models still fall back).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from robustcli.config import TrainingSettings
from robustcli.task import Candidate, Task, TaskData
from robustcli.training import PER_INSTANCE_KEYS

__all__ = [
    "CPU_CACHE_BYTES", "CPU_LONE_CONV_BATCH", "CPU_MIN_STACK", "CPU_STACK_EXAMPLES", "StackedExecutor", "group_jobs",
    "stack_signature", "unstackable_reason",
]

#: the CPU working-set target of one stacked step (activations of all its instances and examples)
CPU_CACHE_BYTES = 8 << 20
#: the smallest CPU stack the size rule may choose
CPU_MIN_STACK = 8
#: training examples (instances x batch) of one CPU stack's step
CPU_STACK_EXAMPLES = 4096
#: the batch size from which a lone instance of a convolutional model trains as a stack of one on the CPU
CPU_LONE_CONV_BATCH = 64

Job = tuple[Candidate, Any]


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


def stack_members(own: Candidate, members: Sequence[Job]) -> tuple[str, ...]:
    """The ``robust.stack`` entries of an instance of ``own`` trained in a stack of ``members``."""
    return tuple(str(s.index) if c.id == own.id else f"{c.id}:{s.index}" for c, s in members)


class StackedExecutor:
    """Trains (candidate, spec) jobs as stacks and yields (candidate, result) as each finishes."""

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
        self.compact = compact
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

    def prepare(self) -> None:
        """Nothing to connect to: trains in this process."""

    def close(self) -> None:
        """Nothing to shut down."""

    def run(self, task: Task, data: TaskData, jobs: Sequence[Job], settings: TrainingSettings) -> Iterator[Job]:
        """Train the units :func:`~robustcli.execution.planning.plan_units` cuts, in the order the jobs came."""
        from robustcli.execution.planning import plan_units

        for unit in plan_units(task, data, jobs, settings, planner=self):
            yield from self.run_unit(task, data, unit, settings)

    def run_unit(self, task: Task, data: TaskData, unit: Any, settings: TrainingSettings) -> Iterator[Job]:
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
