"""The stacked training loop: K instances trained as one stack, each as the plain loop trains it.

See the package's docstring (:mod:`robustcli.training.stacked`) for what each instance keeps and
what the stack changes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.func import vmap

from robustcli.config import TrainingSettings
from robustcli.errors import InputError
from robustcli.execution.cores import wait_policy as omp_wait_policy
from robustcli.task import Candidate, Task
from robustcli.training import PER_INSTANCE_KEYS
from robustcli.training.cpu_memory import keep_freed_memory
from robustcli.training.early_stopping import EarlyStopping, StopReason
from robustcli.training.instance import InstanceResult, InstanceSpec, has_lr_schedule, resolve_device, sample_indices
from robustcli.training.stacked import tuning
from robustcli.training.stacked.build import forward_fn, loss_fn
from robustcli.training.stacked.data import Gather
from robustcli.training.stacked.probe import build
from robustcli.training.stacked_optim import make_stacked_optimizer

__all__ = ["iter_stacked", "train_stacked"]


@dataclass
class _Row:
    """Bookkeeping of one instance while it is in the stack."""

    pos: int
    spec: InstanceSpec
    candidate: Candidate
    shuffle: torch.Generator
    stopper: EarlyStopping
    train_curve: list[float] = field(default_factory=list)
    test_curve: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _architecture(candidate: Candidate) -> str:
    """The candidate's parameters a stack must share, as canonical JSON (tuples and lists alike,
    as the executor's stack signature sees them)."""
    arch = {k: v for k, v in candidate.params.items() if k not in PER_INSTANCE_KEYS}
    return json.dumps(arch, sort_keys=True, default=str)


def _check_group(candidates: Sequence[Candidate], specs: Sequence[InstanceSpec]) -> None:
    if not specs:
        raise InputError("train_stacked needs at least one instance spec")
    if len(candidates) != len(specs):
        raise InputError(f"{len(candidates)} candidates for {len(specs)} instance specs")
    arch = _architecture(candidates[0])
    for cand in candidates[1:]:
        if _architecture(cand) != arch:
            raise InputError(
                f"candidates {candidates[0].label} and {cand.label} cannot share a stack: they differ in more "
                f"than {', '.join(PER_INSTANCE_KEYS)} (a stack needs one architecture, optimizer and batch size)"
            )
    sizes = {(s.train_size, s.test_size) for s in specs}
    if len(sizes) != 1:
        raise InputError(f"a stack needs one train_size and test_size for all its instances, got {sorted(sizes, key=str)}")


def iter_stacked(
    task: Task,
    candidate: Candidate | Sequence[Candidate],
    data: TaskData,
    specs: Sequence[InstanceSpec],
    settings: TrainingSettings,
    *,
    compact: bool = True,
    fast_layout: bool = True,
    passes: Iterable[str] | None = None,
) -> Iterator[tuple[int, InstanceResult]]:
    """Train the instances of ``specs`` as one stack; yield ``(position in specs, result)`` as each
    instance stops (the position tells apart equal specs of different candidates).

    ``candidate`` is one candidate for all instances, or one per instance (same architecture,
    optimizer and batch size; lr, weight_decay and momentum may differ). ``compact`` drops
    finished instances from the stack (default); ``False`` keeps computing them (unused) so that
    the stack size, hence every instance's floating-point path, stays fixed. ``fast_layout``
    (default) gathers image batches channels-last and rewrites the stateless copy of the model
    exactly with ``passes`` (names from :data:`.rewrites.PASSES`; all by default), checked at
    start by :func:`.probe.build`; ``False`` is vmap's own path, kept for benchmarks.
    """
    started_at = time.time()  # the stack's start is every member's: its seconds are only a share
    specs = list(specs)
    candidates = [candidate] * len(specs) if isinstance(candidate, Candidate) else list(candidate)
    _check_group(candidates, specs)
    if has_lr_schedule(task):
        raise InputError(f"task {task.name!r} schedules its learning rate (lr_factor): train it with --engine plain")
    device = resolve_device(settings.device)
    if device.type == "cpu":
        keep_freed_memory()  # no page faults for the stack's big activations (see cpu_memory)
    replace = settings.sampling == "bootstrap"
    n = specs[0].train_size

    # data: the pool and the test set once on the device; per instance only indices into them
    drawn = [sample_indices(data, s, replace) for s in specs]
    train_idx = torch.stack([tr for tr, _ in drawn])
    pool = Gather(data.pool_x.to(device), data.pool_y.to(device), channels_last=fast_layout)
    test = Gather(data.test_x.to(device), data.test_y.to(device), channels_last=fast_layout)
    # the same per-instance test subsample as the plain loop (all specs share test_size)
    test_idx = torch.stack([te for _, te in drawn]).to(device) if drawn[0][1] is not None else None

    probe = (data.pool_x[:4], data.pool_y[:4])
    base, params, buffers = build(task, candidates, specs, device, fast=fast_layout, probe=probe, passes=passes)
    optimizer = make_stacked_optimizer(list(params.values()), candidates)
    batch = int(candidates[0].params.get("batch_size", 64))
    rows = [
        _Row(pos, s, c, torch.Generator().manual_seed(s.init_seed), EarlyStopping(settings.early_stopping))
        for pos, (s, c) in enumerate(zip(specs, candidates, strict=True))
    ]
    monitor_test = settings.early_stopping.monitor == "test"
    # batches are [B, K, ...] (instance dim 1): the grouped convolutions then need no transpose
    step_fn = vmap(loss_fn(task, base), in_dims=(0, 0, 1, 1))
    fwd = forward_fn(base)
    eval_chunk = tuning.for_device(device.type).eval_chunk
    done: set[int] = set()  # rows (of the current stack) that have stopped, with compact=False

    while True:
        epoch_start = time.perf_counter()
        k = len(rows)
        live = [i for i in range(k) if i not in done]
        orders = torch.stack(
            [torch.randperm(n, generator=rows[i].shuffle) if i not in done else torch.arange(n) for i in range(k)]
        )
        batch_idx = torch.gather(train_idx, 1, orders).t().contiguous().to(device)  # [n, K] pool indices
        total = torch.zeros(k, device=device)
        plist = list(params.values())
        for lo in range(0, n, batch):
            idx = batch_idx[lo : lo + batch]  # the last batch may be short: same size for all rows
            x, y = pool(idx)
            # the sum of each instance's own mean objective: each row gets exactly its gradient
            losses = step_fn(params, buffers, x, y)
            losses.sum().backward()
            optimizer.step()
            for p in plist:
                p.grad = None
            total += losses.detach() * idx.shape[0]  # on the device: no sync per batch
        train_losses = [t / n for t in total.tolist()]
        test_losses = _evaluate(task, fwd, base, params, buffers, test, test_idx, eval_chunk)

        per_row = (time.perf_counter() - epoch_start) / max(1, len(live))
        stopped: list[int] = []
        for i in live:
            row = rows[i]
            row.seconds += per_row
            tr, te = train_losses[i], test_losses[i]
            row.train_curve.append(tr)
            row.test_curve.append(te)
            if not (math.isfinite(tr) and math.isfinite(te)):
                row.stopper.update(math.nan)
                reason: StopReason | None = "diverged"
            else:
                reason = row.stopper.update(te if monitor_test else tr)
            if reason is not None:
                stopped.append(i)
                yield row.pos, _result(row, reason, device, started_at)
        if not stopped:
            continue
        done.update(stopped)
        if len(done) == k:
            return
        if compact:  # finished rows leave the stack: parameters, optimiser state, data indices
            keep = [i for i in range(k) if i not in done]
            keep_t = torch.tensor(keep, device=device)
            # (indexing keeps each tensor's memory layout, index_select would not)
            params = {name: p.detach()[keep_t].requires_grad_(p.requires_grad) for name, p in params.items()}
            buffers = {name: b.index_select(0, keep_t) for name, b in buffers.items()}
            optimizer.keep(keep, list(params.values()))
            train_idx = train_idx[torch.tensor(keep)]
            if test_idx is not None:
                test_idx = test_idx.index_select(0, keep_t)
            rows = [rows[i] for i in keep]
            done = set()
        # with compact=False the finished rows keep training, unread, and the stack keeps its size


def _evaluate(
    task: Task, fwd, base, params, buffers, test: Gather, test_idx: torch.Tensor | None, chunk_size: int
) -> list[float]:
    """Each row's test loss, from predictions made in chunks of ``chunk_size`` examples per row."""
    k = next(iter(params.values())).shape[0]
    shared = test_idx is None
    size = test.y.shape[0] if shared else test_idx.shape[1]
    chunk = max(1, chunk_size // k)
    base.eval()
    with torch.no_grad():
        if shared:
            # one input for all rows: the first convolution is one ungrouped convolution with the
            # K instances' filters side by side, written channels-last (_SharedInputConv)
            batched = vmap(fwd, in_dims=(0, 0, None))
            preds = torch.cat([batched(params, buffers, test.shared(i, i + chunk)) for i in range(0, size, chunk)], 1)
        else:
            # per-row indices [c, K], gathered in the training layout (channels-last kernels)
            batched = vmap(fwd, in_dims=(0, 0, 1), out_dims=0)
            preds = torch.cat(
                [batched(params, buffers, test(test_idx[:, i : i + chunk].t())[0]) for i in range(0, size, chunk)], 1
            )
        ys = [test.y] * k if shared else [test.y[test_idx[j]] for j in range(k)]
        losses = [task.test_loss(preds[j], ys[j]) for j in range(k)]
    base.train()
    # test_loss may return a tensor or a float; one transfer for all rows
    return torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in losses]).tolist()


def _result(row: _Row, reason: StopReason, device: torch.device, started_at: float = 0.0) -> InstanceResult:
    failed = reason == "diverged"
    tr, te = row.train_curve[-1], row.test_curve[-1]
    return InstanceResult(
        spec=row.spec,
        status="failed" if failed else "finished",
        stop_reason=reason,
        test_loss=math.nan if failed else row.test_curve[-1],
        epochs=len(row.train_curve),
        seconds=row.seconds,
        spiked=row.stopper.spiked,
        train_curve=row.train_curve,
        test_curve=row.test_curve,
        failure=(f"non-finite loss at epoch {len(row.train_curve)} (train {tr}, test {te})" if failed else None),
        device=str(device),
        threads=torch.get_num_threads(),
        wait_policy=omp_wait_policy(),
        started_at=started_at,
    )


def train_stacked(
    task: Task,
    candidate: Candidate | Sequence[Candidate],
    data: TaskData,
    specs: Sequence[InstanceSpec],
    settings: TrainingSettings,
    *,
    on_result: Callable[[InstanceResult], None] | None = None,
    compact: bool = True,
    fast_layout: bool = True,
    passes: Iterable[str] | None = None,
) -> list[InstanceResult]:
    """Train K instances at once; results in the order of ``specs``.

    ``on_result`` is called with each result as soon as its instance stops. See
    :func:`iter_stacked` for ``candidate``, ``compact``, ``fast_layout`` and ``passes``.
    """
    by_pos: dict[int, InstanceResult] = {}
    for pos, result in iter_stacked(
        task, candidate, data, specs, settings, compact=compact, fast_layout=fast_layout, passes=passes
    ):
        by_pos[pos] = result
        if on_result is not None:
            on_result(result)
    return [by_pos[i] for i in range(len(by_pos))]
