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

What makes the generic path fast on the CPU (``fast_layout``), all exact rewrites of the
stateless copy of the model (:func:`_build`; the task's model is never changed):

* image batches are gathered channels-last with the K instances' channels side by side, which
  vmap's grouped convolution takes without a copy (:class:`_Gather`), and convolution weights are
  stored in that order;
* 2-d max-pooling pools the ``K*C`` channels as one image (:class:`_StackedPool`) instead of
  vmap's rule that folds K into the batch (a copy per pooling, and the slow channels-first kernel);
* ``[ReLU, max-pool]`` runs as ``[max-pool, ReLU]`` (they commute exactly: 4x fewer elements
  through the ReLU after a 2x2 pooling), and a convolution followed by a floor-mode pooling skips
  the rows and columns the pooling never reads (:class:`_StackedConv2d`);
* the test set, one input shared by all instances, is convolved once with the K filter banks side
  by side, and in evaluation a one-channel convolution and its pooling run fused without writing
  the full map (:class:`_SharedConvPool`; its 9-term sums may round differently, ~1e-7 relative).

Freed memory is kept in the process (:mod:`robustcli.training.cpu_memory`): without it, a big
stack's activations are page-faulted in at every step.

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
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.func import functional_call, stack_module_state, vmap

from robustcli.config import TrainingSettings
from robustcli.errors import InputError
from robustcli.task import Candidate, Task, TaskData
from robustcli.training import PER_INSTANCE_KEYS
from robustcli.training.cpu_memory import keep_freed_memory
from robustcli.training.early_stopping import EarlyStopping
from robustcli.training.instance import (
    EVAL_CHUNK, InstanceResult, InstanceSpec, has_lr_schedule, resolve_device, sample_indices,
)  # fmt: skip
from robustcli.training.stacked_optim import make_stacked_optimizer

__all__ = ["activation_bytes_per_example", "check_stackable", "iter_stacked", "train_stacked"]

#: examples (summed over the stack) per evaluation chunk on the CPU. With the shared-input first
#: convolution (_SharedInputConv) and freed memory kept (cpu_memory), 4096-16384 measured flat
#: and 512 up to 1.5x slower (K=64, calorimeter Model 2, 2 cores)
CPU_EVAL_CHUNK = 8192

#: floats per tile of the fused evaluation convolution + pooling on the CPU (_SharedConvPool):
#: 8 MB, 256 output rows x a 2x2 window x K*O = 2048 filters; tiles of 64-256 rows measured
#: alike, the whole 4608-row chunk 2-3x slower (K=64, calorimeter layer 1, 2 cores)
SHARED_CONV_POOL_TILE_FLOATS = 256 * 4 * 2048



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
    """Stands in for a 2-d max-pooling module inside the stacked model (see _StackedPool).

    ``relu_after``: the ReLU that preceded the pooling in the original model is applied after
    it (see :func:`_pool_before_relu`)."""

    def __init__(self, pool: torch.nn.Module, relu_after: bool = False) -> None:
        super().__init__()
        self.pool = pool
        self.relu_after = relu_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(x) if x.dim() != 4 else _StackedPool.apply(x, self.pool.forward)
        return torch.relu(out) if self.relu_after else out


_POOLS = (torch.nn.MaxPool2d, torch.nn.AdaptiveMaxPool2d)
#: element-wise modules that may stand between a convolution and the pooling that crops it
_ELEMENTWISE = (
    torch.nn.ReLU, torch.nn.PReLU, torch.nn.LeakyReLU, torch.nn.ELU, torch.nn.GELU, torch.nn.SiLU,
    torch.nn.Tanh, torch.nn.Sigmoid, torch.nn.Identity,
)  # fmt: skip


def _poolable(module: torch.nn.Module) -> bool:
    return type(module) in _POOLS and not getattr(module, "return_indices", False)


def _swap_pools(module: torch.nn.Module) -> int:
    swapped = 0
    for name, child in module.named_children():
        if isinstance(child, _PoolForStack):
            continue
        if _poolable(child):
            setattr(module, name, _PoolForStack(child))
            swapped += 1
        else:
            swapped += _swap_pools(child)
    return swapped


def _pool_before_relu(module: torch.nn.Module) -> int:
    """In every ``nn.Sequential``, ``[nn.ReLU, max-pool]`` becomes ``[Identity, pool -> ReLU]``.

    Exact, values and gradients: max-pooling commutes with any non-decreasing function, and
    relu(max) selects the same element as max(relu) when the maximum is positive (the first of
    equal maxima, in both orders) while both give a zero gradient when it is not. The ReLU then
    runs on the pooled map (4x fewer elements after a 2x2 pooling, forward and backward). Only
    ``nn.ReLU`` (PReLU and friends do not commute with max for negative slopes). Returns the
    number of pairs rewritten; parameter names are unchanged (neither module has any)."""
    done = 0
    for child in module.children():
        done += _pool_before_relu(child)
    if isinstance(module, torch.nn.Sequential):
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            relu, pool = module._modules[a], module._modules[b]
            if type(relu) is torch.nn.ReLU and _poolable(pool):
                module._modules[a] = torch.nn.Identity()
                module._modules[b] = _PoolForStack(pool, relu_after=True)
                done += 1
    return done


class _SharedInputConv(torch.autograd.Function):
    """A convolution of one input shared by all K instances (the test set), under vmap.

    vmap's own rule already makes it one ungrouped convolution with the K instances' filters
    side by side (``[N, K*O, H, W]``); this rule only hands it a channels-last input and weight,
    so that oneDNN takes its channels-last kernel and writes the ``[N, H, W, K*O]`` layout the
    stacked pooling and the next grouped convolution read without a copy (measured 2x faster
    than the gathered K-copies path for layer 1 of the calorimeter nets). Same values: the same
    convolution, another memory layout."""

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, conv: torch.nn.Conv2d):
        return torch.nn.functional.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        x, weight, bias, conv = inputs
        ctx.save_for_backward(x, weight, bias)
        ctx.conv = conv

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):  # outside vmap only
        x, weight, bias = ctx.saved_tensors
        conv = ctx.conv
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad, x, weight, None if bias is None else list(bias.shape), list(conv.stride), list(conv.padding),
            list(conv.dilation), False, [0, 0], conv.groups,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], bias is not None and ctx.needs_input_grad[2]],
        )  # fmt: skip
        return gx, gw, gb, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], x, weight, bias, conv):
        xd, wd, bd = in_dims[:3]
        if xd is not None or wd is None or x.dim() != 4 or conv.groups != 1:
            raise NotImplementedError("_SharedInputConv: an unbatched input and batched weights only")
        w = weight.movedim(wd, 0)  # [K, O, I, kh, kw]
        k, o = w.shape[:2]
        w = w.reshape(k * o, *w.shape[2:])
        b = None
        if bias is not None:
            b = (bias.movedim(bd, 0) if bd is not None else bias.expand(k, *bias.shape)).reshape(k * o)
        cl = torch.channels_last
        out = torch.nn.functional.conv2d(
            x.contiguous(memory_format=cl), w.contiguous(memory_format=cl), b, conv.stride, conv.padding, conv.dilation
        )
        return out.reshape(out.shape[0], k, o, *out.shape[2:]), 1


class _SharedConvPool(torch.autograd.Function):
    """Evaluation only (no gradient): a one-channel convolution of an input shared by all K
    instances, then a ``k x k``, stride-``k`` max-pooling, under vmap, without writing the
    full-resolution map: the convolution is computed as matrix products of the input's patches
    (each output position's ``k*k`` window positions as consecutive rows) with the
    ``[kh*kw, K*O]`` filters, and the pooling as their maximum over the window, in cache-sized
    tiles of rows. Max is exact in any order, so the pooled values are
    those of convolution-then-pooling up to the convolution's own summation order (a 9-term
    dot product per value). Measured 2.5x faster than the two ops for layer 1 of the calorimeter
    nets (K=64, 2 cores): the full map (150 MB per chunk of the test set) never exists."""

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, k: tuple[int, int]) -> torch.Tensor:
        out = torch.nn.functional.conv2d(x, weight)
        return torch.nn.functional.max_pool2d(out, k)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        raise RuntimeError("_SharedConvPool is for evaluation only")

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], x: torch.Tensor, weight: torch.Tensor, k: tuple[int, int]):
        if in_dims[0] is not None or in_dims[1] is None:
            raise NotImplementedError("_SharedConvPool: an unbatched input and batched weights only")
        w = weight.movedim(in_dims[1], 0)  # [K, O, 1, kh, kw]
        nk, o, _, kh, kw = w.shape
        wt = w.reshape(nk * o, kh * kw).t().contiguous()  # [kh*kw, K*O]
        n, _, h, wd = x.shape
        ho, wo = (h - kh + 1) // k[0], (wd - kw + 1) // k[1]  # pooled size (floor mode)
        img = x[:, 0, : ho * k[0] + kh - 1, : wo * k[1] + kw - 1]
        patches = img.unfold(1, kh, 1).unfold(2, kw, 1)  # [N, Ho*k, Wo*k, kh, kw]
        # each output position's k*k window positions as consecutive rows: [N*Ho*Wo*k*k, kh*kw]
        window = k[0] * k[1]
        rows = (
            patches.reshape(n, ho, k[0], wo, k[1], kh * kw).permute(0, 1, 3, 2, 4, 5).reshape(n * ho * wo * window, kh * kw)
        )
        best = torch.empty(n * ho * wo, nk * o, dtype=x.dtype, device=x.device)
        # in tiles whose [tile, k*k, K*O] product stays in the cache (a few MB): the product and
        # its max over the window read back from the cache, not from memory (measured 2-3x
        # faster than whole-chunk products, which are memory-bound at 37 MB each)
        tile = max(1, SHARED_CONV_POOL_TILE_FLOATS // (window * nk * o)) if x.device.type == "cpu" else best.shape[0]
        for lo in range(0, best.shape[0], tile):
            hi = min(best.shape[0], lo + tile)
            part = (rows[lo * window : hi * window] @ wt).view(hi - lo, window, nk * o)
            torch.amax(part, 1, out=best[lo:hi])
        # [N*Ho*Wo, K*O] is [N, K*O, Ho, Wo] channels-last: logical [N, K, O, Ho, Wo], instances at dim 1
        out = best.view(n, ho, wo, nk, o).permute(0, 3, 4, 1, 2)
        return out, 1


class _StackedConv2d(torch.nn.Conv2d):
    """A ``Conv2d`` of the stateless stacked model (same parameters, same names).

    * ``crop_kernel``/``crop_stride`` (set when a floor-mode ``MaxPool2d(k, stride=s)`` without
      padding follows): only the output rows and columns the pooling reads are computed. It
      reads the first ``((H - k) // s) * s + k`` rows of its input: on the calorimeter nets'
      13x13 map a 2x2 pooling drops row and column 12, 15% of the convolution's work, forward
      and backward. The rows kept are computed from the same input window with the same
      weights; the dropped ones never reach the loss.
    * an input shared by all instances (not batched under vmap, e.g. the test set) goes through
      :class:`_SharedInputConv`.
    """

    crop_kernel: tuple[int, int] | None = None
    crop_stride: tuple[int, int] = (1, 1)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the max-pooling (and ReLU) that followed this convolution, run here (_fuse_conv_pool)
        pool = self._modules.get("pool_after")
        if pool is None:
            return self._conv(x)
        mp = pool.pool
        k = _pair(mp.kernel_size) if type(mp) is torch.nn.MaxPool2d else None
        if (
            k is not None
            and not torch.is_grad_enabled()
            and x.dim() == 4
            and not _is_batched(x)
            and _is_batched(self.weight)
            and self.in_channels == 1
            and self.groups == 1
            and self.bias is None
            and self.stride == (1, 1)
            and self.dilation == (1, 1)
            and self.padding in ((0, 0), "valid")
            and k == _pair(mp.stride if mp.stride is not None else mp.kernel_size)
            and _pair(mp.padding) == (0, 0)
            and _pair(mp.dilation) == (1, 1)
            and not mp.ceil_mode
        ):
            out = _SharedConvPool.apply(x, self.weight, k)
            return torch.relu(out) if pool.relu_after else out
        return pool(self._conv(x))

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and self.crop_kernel is not None:
            keep = []
            for axis in (0, 1):
                size = x.shape[2 + axis]
                span = self.dilation[axis] * (self.kernel_size[axis] - 1) + 1
                out = (size - span) // self.stride[axis] + 1
                k, s = self.crop_kernel[axis], self.crop_stride[axis]
                used = ((out - k) // s) * s + k if out >= k else out
                keep.append((used - 1) * self.stride[axis] + span)
            if keep[0] < x.shape[2] or keep[1] < x.shape[3]:
                x = x[:, :, : keep[0], : keep[1]]
        if (
            x.dim() == 4
            and self.groups == 1
            and self.padding_mode == "zeros"
            and not _is_batched(x)
            and _is_batched(self.weight)
        ):
            return _SharedInputConv.apply(x, self.weight, self.bias, self)
        return super().forward(x)


def _is_batched(t: torch.Tensor) -> bool:
    return torch._C._functorch.is_batchedtensor(t)


def _fuse_conv_pool(module: torch.nn.Module) -> int:
    """In every ``nn.Sequential``, ``[_StackedConv2d, Identity..., _PoolForStack]`` (what
    :func:`_pool_before_relu` leaves of conv, ReLU, pooling) becomes the convolution running the
    pooling itself (``pool_after``) and Identity in the pooling's place: the same ops in the
    same order, plus :class:`_SharedConvPool` for the evaluation of a shared input."""
    done = 0
    for child in module.children():
        done += _fuse_conv_pool(child)
    if isinstance(module, torch.nn.Sequential):
        names = list(module._modules)
        for i, name in enumerate(names):
            conv = module._modules[name]
            if type(conv) is not _StackedConv2d or "pool_after" in conv._modules:
                continue
            j = i + 1
            while j < len(names) and type(module._modules[names[j]]) is torch.nn.Identity:
                j += 1
            if j < len(names) and type(module._modules[names[j]]) is _PoolForStack:
                conv.pool_after = module._modules[names[j]]
                module._modules[names[j]] = torch.nn.Identity()
                done += 1
    return done


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _crop_convs(module: torch.nn.Module) -> int:
    """In every ``nn.Sequential``, a ``Conv2d`` followed (through element-wise modules only) by
    a floor-mode, unpadded ``MaxPool2d`` becomes a cropping :class:`_StackedConv2d`. Returns how many."""
    done = 0
    for child in module.children():
        done += _crop_convs(child)
    if isinstance(module, torch.nn.Sequential):
        mods = list(module._modules.values())
        for i, conv in enumerate(mods):
            # only the plain Conv2d that _build turned into ours (a subclass keeps its own forward)
            if type(conv) is not _StackedConv2d or conv.padding not in ((0, 0), "valid"):
                continue
            j = i + 1
            while j < len(mods) and type(mods[j]) in _ELEMENTWISE:
                j += 1
            pool = mods[j] if j < len(mods) else None
            if (
                type(pool) is torch.nn.MaxPool2d
                and not pool.return_indices  # the indices would refer to the cropped map
                and not pool.ceil_mode
                and _pair(pool.padding) == (0, 0)
                and _pair(pool.dilation) == (1, 1)
            ):
                conv.crop_kernel = _pair(pool.kernel_size)
                conv.crop_stride = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
                done += 1
    return done


def _build(
    task: Task,
    candidates: Sequence[Candidate],
    specs: Sequence[InstanceSpec],
    device: torch.device,
    fast: bool = True,
    probe: torch.Tensor | None = None,
):
    """K models, each built and initialised exactly as the plain loop does, then stacked.

    Returns the stateless base module (on the meta device, rewritten when ``fast``) and the
    stacked parameters and buffers, ``[K, ...]`` leaf tensors on ``device``. With ``probe`` (a few
    input examples), the rewritten model's predictions, training path and evaluation path, are
    checked against the first models' own; on a mismatch (a model the rewrites do not foresee,
    e.g. a module called twice from custom code) the unrewritten model is used."""
    models = []
    for cand, spec in zip(candidates, specs, strict=True):
        torch.manual_seed(spec.init_seed)
        model = task.build_model(cand)
        task.init_weights(model)
        models.append(model.to(device).train())
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    if not fast:
        return base, params, buffers
    plain_base = copy.deepcopy(base)
    # a module object that appears twice in the tree is left alone: a rewrite would change every use
    seen = Counter(id(m) for m in base.modules(remove_duplicate=False))
    for m in base.modules():
        if type(m) is torch.nn.Conv2d and seen[id(m)] == 1:
            m.__class__ = _StackedConv2d
    _crop_convs(base)
    _pool_before_relu(base)
    _swap_pools(base)
    _fuse_conv_pool(base)
    fast_params = dict(params)
    for name in _conv_weights(base):
        fast_params[name] = _channels_last_rows(params[name]).requires_grad_(params[name].requires_grad)
    if probe is not None and not _same_predictions(base, fast_params, buffers, models[:2], probe.to(device)):
        if not _same_predictions(plain_base, params, buffers, models[:2], probe.to(device)):
            raise InputError(
                f"the stacked copy of task {task.name!r}'s model does not predict what each model predicts alone "
                "(state outside its parameters and buffers, e.g. a plain tensor attribute?): use --engine plain"
            )
        return plain_base, params, buffers
    return base, fast_params, buffers


def _same_predictions(base, params, buffers, models, x: torch.Tensor) -> bool:
    """The rewritten stacked model predicts what each of the first models predicts alone, through
    the training path (batched inputs, gradients on) and the evaluation path (a shared input)."""
    k = len(models)
    rows = {n: p[:k] for n, p in params.items()}
    bufs = {n: b[:k] for n, b in buffers.items()}
    fwd = _forward_fn(base)
    base.eval()
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            with torch.no_grad():
                want = torch.stack([m.eval()(x) for m in models])
            for m in models:
                m.train()
            gather = _Gather(x, torch.zeros(x.shape[0], device=x.device), channels_last=True)
            idx = torch.arange(x.shape[0], device=x.device).unsqueeze(1).expand(-1, k)
            with torch.enable_grad():
                got_train = vmap(fwd, in_dims=(0, 0, 1))(rows, bufs, gather(idx)[0]).detach()
            with torch.no_grad():
                got_eval = vmap(fwd, in_dims=(0, 0, None))(rows, bufs, gather.shared(0, x.shape[0]))
    except Exception:  # noqa: BLE001 - a rewrite the model does not survive: use the plain stacked model
        return False
    finally:
        base.train()
    scale = want.abs().max().clamp_min(1e-6)
    return all(g.shape == want.shape and bool(((g - want).abs().max() / scale) < 1e-4) for g in (got_train, got_eval))


def _conv_weights(base: torch.nn.Module) -> list[str]:
    return [f"{n}.weight" if n else "weight" for n, m in base.named_modules() if isinstance(m, torch.nn.Conv2d)]


def _channels_last_rows(p: torch.Tensor) -> torch.Tensor:
    """A stacked conv weight ``[K, O, I, kh, kw]`` laid out ``[K, O, kh, kw, I]`` in memory (same
    values): the grouped convolution then reads ``[K*O, I, kh, kw]`` as the channels-last weight
    its channels-last input asks for, in place of a copy of the weight (forward and backward) and
    of its gradient at every step. The optimiser's element-wise math does not see the layout (its
    state is created with the parameter's strides)."""
    p = p.detach()
    if p.dim() != 5:
        return p
    return p.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


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
    if has_lr_schedule(task):
        return f"task {task.name!r} schedules its learning rate (lr_factor), which the stacked optimisers do not apply"
    try:
        with torch.random.fork_rng(devices=[]):
            specs = [InstanceSpec(i, i + 1, i + 1, 2) for i in range(2)]
            base, params, buffers = _build(task, [candidate, candidate], specs, torch.device("cpu"), probe=data.pool_x[:4])
            gather = _Gather(data.pool_x[:2], data.pool_y[:2], channels_last=True)
            x, y = gather(torch.tensor([[0, 1], [1, 0]]))
            losses = vmap(_loss_fn(task, base), in_dims=(0, 0, 1, 1))(params, buffers, x, y)
            if losses.shape != (2,):
                return f"the objective of task {task.name!r} does not return one scalar per instance under vmap"
            losses.sum().backward()
            if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not m.track_running_stats for m in base.modules()):
                # its evaluation depends on which examples share a batch, and the stack scores the
                # test set in other chunks than the plain loop
                return "batch normalisation without running statistics (batch-dependent evaluation)"
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
) -> Iterator[tuple[int, InstanceResult]]:
    """Train the instances of ``specs`` as one stack; yield ``(position in specs, result)`` as each
    instance stops (the position tells apart equal specs of different candidates).

    ``candidate`` is one candidate for all instances, or one per instance (same architecture,
    optimizer and batch size; lr, weight_decay and momentum may differ). ``compact`` drops
    finished instances from the stack (default); ``False`` keeps computing them (unused) so that
    the stack size, hence every instance's floating-point path, stays fixed. ``fast_layout``
    (default) gathers image batches channels-last and rewrites the stateless copy of the model
    exactly (see :func:`_build`); ``False`` is vmap's own path, kept for benchmarks.
    """
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
    pool = _Gather(data.pool_x.to(device), data.pool_y.to(device), channels_last=fast_layout)
    test = _Gather(data.test_x.to(device), data.test_y.to(device), channels_last=fast_layout)
    # the same per-instance test subsample as the plain loop (all specs share test_size)
    test_idx = torch.stack([te for _, te in drawn]).to(device) if drawn[0][1] is not None else None

    base, params, buffers = _build(task, candidates, specs, device, fast=fast_layout, probe=data.pool_x[:4])
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
    task: Task, fwd, base, params, buffers, test: _Gather, test_idx: torch.Tensor | None, chunk_size: int
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
        threads=torch.get_num_threads(),
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
    for pos, result in iter_stacked(task, candidate, data, specs, settings, compact=compact, fast_layout=fast_layout):
        by_pos[pos] = result
        if on_result is not None:
            on_result(result)
    return [by_pos[i] for i in range(len(by_pos))]
