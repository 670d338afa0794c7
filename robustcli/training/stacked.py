"""Many instances of one candidate trained at once, as one stacked model.

K instances of a candidate (or of candidates that share an architecture and a batch size) keep
exactly what the plain loop (:func:`robustcli.training.instance.train_instance`) gives each of
them:

* its own initial weights: the model is built K times, each under
  ``torch.manual_seed(spec.init_seed)`` followed by ``task.init_weights``, then the parameters are
  stacked into ``[K, ...]`` tensors (``torch.func.stack_module_state``);
* its own training sample (the same :func:`sample_indices` draw) and its own batch order (a
  generator seeded with ``init_seed``, one ``randperm`` per epoch, batches of ``batch_size`` then
  the remainder);
* its own optimiser state, step count and hyperparameters (:mod:`stacked_optim`, bitwise equal to
  ``torch.optim`` per instance);
* its own early stopping; a finished instance leaves the stack (the stack is compacted) and the
  others go on.

The training data stay on the device as one tensor; each step gathers a ``[B, K, ...]`` batch by
index (no DataLoader). The model runs through ``torch.func.vmap(functional_call)``, which works
for any task model free of data-dependent Python control flow (:func:`check_stackable` probes it):
vmap turns convolutions into one grouped convolution and linear layers into batched matmuls. The
loss is the sum over instances of each instance's own mean objective, so each instance receives
exactly its own gradient.

Two layout measures, both exact, make the generic path fast on the CPU (``fast_layout``):
image batches are gathered channels-last with the K instances' channels side by side, which
vmap's grouped convolution takes without a copy; and 2-d max-pooling modules are swapped (in the
stateless copy of the model only) for a twin whose vmap rule pools the ``K*C`` channels as one
image, instead of vmap's default rule that folds K into the batch (a copy per pooling, and the
slow channels-first CPU kernel).

Timing: an instance's ``seconds`` is its share of the stack's wall time (each epoch's time split
evenly among the instances trained in it), so the seconds of a stack's results add up to its
wall time.

Fidelity: the optimiser math is exact, but the forward/backward of the stacked model is not
bitwise equal to the single model's (different kernels, different summation orders), so a stacked
instance matches its plain-loop twin within floating-point noise amplified by training, not
bitwise. Within one stack, an instance's numbers do not depend on its neighbours' data, seeds or
divergence; they can depend on the stack size K, which compaction changes when neighbours stop
(``compact=False`` keeps K fixed, at the price of computing the stopped rows).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.func import functional_call, stack_module_state, vmap

from robustcli.config import TrainingSettings
from robustcli.errors import InputError
from robustcli.task import Candidate, Task, TaskData
from robustcli.training.early_stopping import EarlyStopping
from robustcli.training.instance import EVAL_CHUNK, InstanceResult, InstanceSpec, resolve_device, sample_indices
from robustcli.training.stacked_optim import make_stacked_optimizer

__all__ = ["activation_bytes_per_example", "check_stackable", "iter_stacked", "train_stacked"]

#: examples (summed over the stack) per evaluation chunk on the CPU: small enough for the
#: activations to stay in cache (measured: 2-3x faster than 16384 for the calorimeter nets)
CPU_EVAL_CHUNK = 512

#: per-instance hyperparameters a stack may vary; everything else must be equal
_PER_INSTANCE_KEYS = ("lr", "weight_decay", "momentum")


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


def _architecture(candidate: Candidate) -> dict[str, Any]:
    return {k: v for k, v in candidate.params.items() if k not in _PER_INSTANCE_KEYS}


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
                f"than {', '.join(_PER_INSTANCE_KEYS)} (a stack needs one architecture, optimizer and batch size)"
            )
    sizes = {(s.train_size, s.test_size) for s in specs}
    if len(sizes) != 1:
        raise InputError(f"a stack needs one train_size and test_size for all its instances, got {sorted(sizes, key=str)}")


def _loss_fn(task: Task, base: torch.nn.Module) -> Callable[..., torch.Tensor]:
    def loss(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        return task.objective(functional_call(base, (params, buffers), (x,)), y)

    return loss


def _forward_fn(base: torch.nn.Module) -> Callable[..., torch.Tensor]:
    def forward(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor):
        return functional_call(base, (params, buffers), (x,))

    return forward


class _StackedPool(torch.autograd.Function):
    """A pooling op whose vmap rule pools ``[N, K*C, H, W]`` in place of ``[K*N, C, H, W]``.

    vmap's own rule for max pooling folds the instance dimension into the batch dimension, which
    costs a copy after every grouped convolution (whose output holds the instances next to the
    channels) and, on CPU, lands on the slow channels-first pooling kernel. Pooling works channel
    by channel, so treating the K instances' channels as K*C channels is the same operation:
    the values and the selected indices are identical, and the backward is the pooling's own.
    """

    @staticmethod
    def forward(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return fn(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.fn = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # outside vmap only
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            x = x.detach().requires_grad_()
            out = ctx.fn(x)
        return torch.autograd.grad(out, x, grad)[0], None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]):
        if in_dims[0] is None:
            return fn(x), None
        x = x.movedim(in_dims[0], 1)  # [N, K, C, H, W]
        n, k, c = x.shape[:3]
        x = x.reshape(n, k * c, *x.shape[3:])  # a view when the layout is [N, H, W, K, C]
        if x.device.type == "cpu" and x.dim() == 4 and not x.is_contiguous(memory_format=torch.channels_last):
            # the CPU's channels-first max pooling is ~10-30x slower than channels-last here: a
            # copy (e.g. after a convolution of an unbatched channels-first input) is cheaper
            x = x.contiguous(memory_format=torch.channels_last)
        out = fn(x)
        return out.reshape(n, k, c, *out.shape[2:]), 1


class _PoolForStack(torch.nn.Module):
    """Stands in for a 2-d max-pooling module inside the stacked model (see _StackedPool)."""

    def __init__(self, pool: torch.nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return self.pool(x)
        return _StackedPool.apply(x, self.pool.forward)


_POOLS = (torch.nn.MaxPool2d, torch.nn.AdaptiveMaxPool2d)


def _swap_pools(module: torch.nn.Module) -> int:
    swapped = 0
    for name, child in module.named_children():
        if type(child) in _POOLS and not getattr(child, "return_indices", False):
            setattr(module, name, _PoolForStack(child))
            swapped += 1
        else:
            swapped += _swap_pools(child)
    return swapped


def _build(
    task: Task, candidates: Sequence[Candidate], specs: Sequence[InstanceSpec], device: torch.device, fast: bool = True
):
    """K models, each built and initialised exactly as the plain loop does, then stacked.

    Returns the stateless base module (on the meta device, pooling swapped when ``fast``) and
    the stacked parameters and buffers, ``[K, ...]`` leaf tensors on ``device``."""
    models = []
    for cand, spec in zip(candidates, specs, strict=True):
        torch.manual_seed(spec.init_seed)
        model = task.build_model(cand)
        task.init_weights(model)
        models.append(model.to(device).train())
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    if fast:
        _swap_pools(base)
    return base, params, buffers


class _Gather:
    """Per-instance batches gathered from one on-device copy of the examples, as ``[B, K, ...]``.

    With ``channels_last`` (image inputs ``[N, C, H, W]``), a batch is laid out in memory as
    ``[B, H, W, K, C]``: vmap then sees the K instances' inputs as one channels-last
    ``[B, K*C, H, W]`` image without a copy, and the grouped convolutions and poolings run on
    the channels-last kernels (on CPU several times faster than channels-first for these shapes).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, channels_last: bool) -> None:
        self.channels_last = channels_last and x.dim() == 4
        self.x = x.permute(0, 2, 3, 1).contiguous() if self.channels_last else x
        self.y = y

    def __call__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``idx`` [B, K] example indices -> x [B, K, ...], y [B, K, ...]."""
        x = self.x[idx]
        if self.channels_last:  # [B, K, H, W, C] -> memory [B, H, W, K, C], logical [B, K, C, H, W]
            x = x.permute(0, 2, 3, 1, 4).contiguous().permute(0, 3, 4, 1, 2)
        return x, self.y[idx]

    def shared(self, lo: int, hi: int) -> torch.Tensor:
        """Examples lo:hi for all instances at once (unbatched for vmap)."""
        x = self.x[lo:hi]
        return x.permute(0, 3, 1, 2) if self.channels_last else x


def check_stackable(task: Task, candidate: Candidate, data: TaskData) -> str | None:
    """None when ``candidate``'s model trains under vmap, else why not (one line).

    A cheap probe (2 instances, 2 examples, one backward, on the CPU) to run before choosing the
    stacked engine: models with batch norm, in-place writes into unbatched tensors or
    data-dependent control flow fail here rather than in the middle of a study. The global RNG
    state is left as it was.
    """
    if not task.tags.supports_stacking:
        return f"task {task.name!r} declares supports_stacking=False"
    try:
        with torch.random.fork_rng(devices=[]):
            specs = [InstanceSpec(i, i + 1, i + 1, 2) for i in range(2)]
            base, params, buffers = _build(task, [candidate, candidate], specs, torch.device("cpu"))
            gather = _Gather(data.pool_x[:2], data.pool_y[:2], channels_last=True)
            x, y = gather(torch.tensor([[0, 1], [1, 0]]))
            losses = vmap(_loss_fn(task, base), in_dims=(0, 0, 1, 1))(params, buffers, x, y)
            if losses.shape != (2,):
                return f"the objective of task {task.name!r} does not return one scalar per instance under vmap"
            losses.sum().backward()
    except Exception as exc:  # noqa: BLE001 - any failure means "use the plain loop"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {first}"
    return None


def activation_bytes_per_example(task: Task, candidate: Candidate, data: TaskData) -> int:
    """Bytes of the outputs of the model's leaf modules for one example (one forward pass, CPU).

    A proxy for the memory a stack streams through per example and instance; the stacked
    executor uses it to keep a CPU stack's working set near the caches."""
    with torch.random.fork_rng(devices=[]):
        model = task.build_model(candidate)
    total = 0

    def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(data.pool_x[:2])
    finally:
        for h in handles:
            h.remove()
    return max(1, total // 2)


def iter_stacked(
    task: Task,
    candidate: Candidate | Sequence[Candidate],
    data: TaskData,
    specs: Sequence[InstanceSpec],
    settings: TrainingSettings,
    *,
    compact: bool = True,
    fast_layout: bool = True,
) -> Iterator[InstanceResult]:
    """Train the instances of ``specs`` as one stack; yield each result as its instance stops.

    ``candidate`` is one candidate for all instances, or one per instance (same architecture,
    optimizer and batch size; lr, weight_decay and momentum may differ). ``compact`` drops
    finished instances from the stack (default); ``False`` keeps computing them (unused) so that
    the stack size, hence every instance's floating-point path, stays fixed. ``fast_layout``
    (default) gathers image batches channels-last and pools the K instances' channels as one
    image (see :class:`_Gather`, :class:`_StackedPool`); ``False`` is vmap's own path, kept for
    benchmarks.
    """
    for _, result in _iter_stacked(task, candidate, data, specs, settings, compact=compact, fast_layout=fast_layout):
        yield result


def _iter_stacked(
    task: Task,
    candidate: Candidate | Sequence[Candidate],
    data: TaskData,
    specs: Sequence[InstanceSpec],
    settings: TrainingSettings,
    *,
    compact: bool,
    fast_layout: bool,
) -> Iterator[tuple[int, InstanceResult]]:
    """:func:`iter_stacked`, with each result's position in ``specs``."""
    specs = list(specs)
    candidates = [candidate] * len(specs) if isinstance(candidate, Candidate) else list(candidate)
    _check_group(candidates, specs)
    device = resolve_device(settings.device)
    replace = settings.sampling == "bootstrap"
    n = specs[0].train_size

    # data: the pool and the test set once on the device; per instance only indices into them
    drawn = [sample_indices(data, s, replace) for s in specs]
    train_idx = torch.stack([tr for tr, _ in drawn])
    pool = _Gather(data.pool_x.to(device), data.pool_y.to(device), channels_last=fast_layout)
    test = _Gather(data.test_x.to(device), data.test_y.to(device), channels_last=fast_layout)
    # the same per-instance test subsample as the plain loop (all specs share test_size)
    test_idx = torch.stack([te for _, te in drawn]).to(device) if drawn[0][1] is not None else None

    base, params, buffers = _build(task, candidates, specs, device, fast=fast_layout)
    optimizer = make_stacked_optimizer(list(params.values()), candidates)
    batch = int(candidates[0].params.get("batch_size", 64))
    rows = [
        _Row(pos, s, c, torch.Generator().manual_seed(s.init_seed), EarlyStopping(settings.early_stopping))
        for pos, (s, c) in enumerate(zip(specs, candidates, strict=True))
    ]
    monitor_test = settings.early_stopping.monitor == "test"
    # batches are [B, K, ...] (instance dim 1): the grouped convolutions then need no transpose
    step_fn = vmap(_loss_fn(task, base), in_dims=(0, 0, 1, 1))
    fwd = _forward_fn(base)
    eval_chunk = EVAL_CHUNK if device.type == "cuda" else CPU_EVAL_CHUNK
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
                reason: str | None = "diverged"
            else:
                reason = row.stopper.update(te if monitor_test else tr)
            if reason is not None:
                stopped.append(i)
                yield row.pos, _result(row, reason, device)
        if not stopped:
            continue
        done.update(stopped)
        if len(done) == k:
            return
        if compact:  # finished rows leave the stack: parameters, optimiser state, data indices
            keep = [i for i in range(k) if i not in done]
            keep_t = torch.tensor(keep, device=device)
            params = {name: p.detach().index_select(0, keep_t).requires_grad_() for name, p in params.items()}
            buffers = {name: b.index_select(0, keep_t) for name, b in buffers.items()}
            optimizer.keep(keep, list(params.values()))
            train_idx = train_idx[torch.tensor(keep)]
            if test_idx is not None:
                test_idx = test_idx.index_select(0, keep_t)
            rows = [rows[i] for i in keep]
            done = set()
        # with compact=False the finished rows keep training, unread, and the stack keeps its size


def _evaluate(
    task: Task, fwd, base, params, buffers, test: _Gather, test_idx: torch.Tensor | None, chunk_size: int
) -> list[float]:
    """Each row's test loss, from predictions made in chunks of ``chunk_size`` examples per row."""
    k = next(iter(params.values())).shape[0]
    shared = test_idx is None
    size = test.y.shape[0] if shared else test_idx.shape[1]
    chunk = max(1, chunk_size // k)
    base.eval()
    with torch.no_grad():
        if shared and not test.channels_last:
            batched = vmap(fwd, in_dims=(0, 0, None))
            preds = torch.cat([batched(params, buffers, test.shared(i, i + chunk)) for i in range(0, size, chunk)], 1)
        else:
            # per-row indices [c, K], gathered in the training layout so that the evaluation runs
            # on the same channels-last kernels (the shared test set: the same column K times;
            # measured as fast as one ungrouped convolution of the shared input, which needs a
            # channels-first -> channels-last copy before pooling)
            if shared:
                test_idx = torch.arange(size, device=test.y.device).expand(k, size)
            batched = vmap(fwd, in_dims=(0, 0, 1), out_dims=0)
            preds = torch.cat(
                [batched(params, buffers, test(test_idx[:, i : i + chunk].t())[0]) for i in range(0, size, chunk)], 1
            )
        ys = [test.y] * k if shared else [test.y[test_idx[j]] for j in range(k)]
        losses = [task.test_loss(preds[j], ys[j]) for j in range(k)]
    base.train()
    # test_loss may return a tensor or a float; one transfer for all rows
    return torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in losses]).tolist()


def _result(row: _Row, reason: str, device: torch.device) -> InstanceResult:
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
) -> list[InstanceResult]:
    """Train K instances at once; results in the order of ``specs``.

    ``on_result`` is called with each result as soon as its instance stops. See
    :func:`iter_stacked` for ``candidate``, ``compact`` and ``fast_layout``.
    """
    by_pos: dict[int, InstanceResult] = {}
    for pos, result in _iter_stacked(task, candidate, data, specs, settings, compact=compact, fast_layout=fast_layout):
        by_pos[pos] = result
        if on_result is not None:
            on_result(result)
    return [by_pos[i] for i in range(len(by_pos))]
