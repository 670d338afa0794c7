"""Exact rewrites of the stacked model: a registry of named passes.

The stacked engine runs a stateless copy of the task's model (on the meta device; the task's
own model is never changed) through ``vmap``. Each pass below rewrites that copy in place so
that vmap runs faster on the CPU, and each is exact: forward values and gradients as the
unrewritten model's, up to the summation order of a convolution where that is said. Every pass
is switchable (``iter_stacked(..., passes=...)``, :func:`apply`), and
``tests/test_stacked_engine.py`` checks each alone, forward values and gradients, against the
unrewritten model. The passes run in the registry's order:

``shared_input_conv``
    a convolution of an input shared by all instances (the test set) gets a channels-last input
    and weight (:class:`.ops.SharedInputConv`); a batched input takes vmap's own path.
``crop_conv``
    a convolution followed (through element-wise modules) by a floor-mode unpadded max-pooling
    computes only the rows and columns the pooling reads.
``pool_before_relu``
    ``[ReLU, max-pool]`` runs as ``[max-pool, ReLU]`` (they commute exactly).
``stacked_pool``
    2-d max-pooling pools the ``K*C`` channels as one image (:class:`.ops.StackedPool`) instead
    of vmap's rule that folds K into the batch.
``fused_eval_conv_pool``
    a one-channel, unbiased, unstrided convolution followed (through a ReLU, which then runs
    after the pooling as ``pool_before_relu`` runs it) by its ``k x k``, stride-``k`` max-pooling
    evaluates a shared input without writing the full map (:class:`.ops.SharedConvPool`; its
    9-term sums may round differently, ~1e-7 relative).

The passes see ``nn.Sequential`` containers only (a pair of modules is adjacent there and
nowhere else), and leave alone a convolution subclass (its own forward) and any module object
that appears twice in the tree (a rewrite would change every use).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from robustcli.errors import InputError
from robustcli.training.stacked._torch import is_batched, swap_class
from robustcli.training.stacked.ops import SharedConvPool, SharedInputConv, StackedPool

__all__ = ["PASSES", "Pass", "PoolForStack", "StackedConv2d", "apply"]

_POOLS = (nn.MaxPool2d, nn.AdaptiveMaxPool2d)
#: element-wise modules that may stand between a convolution and the pooling that crops it
_ELEMENTWISE = (
    nn.ReLU, nn.PReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity,
)  # fmt: skip


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class PoolForStack(nn.Module):
    """Stands in for a 2-d max-pooling module inside the stacked model.

    ``stacked``: 4-d inputs go through :class:`.ops.StackedPool` (pass ``stacked_pool``).
    ``relu_after``: the ReLU that preceded the pooling in the original model is applied after
    it (pass ``pool_before_relu``)."""

    def __init__(self, pool: nn.Module, relu_after: bool = False, stacked: bool = False) -> None:
        super().__init__()
        self.pool = pool
        self.relu_after = relu_after
        self.stacked = stacked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = StackedPool.apply(x, self.pool.forward) if self.stacked and x.dim() == 4 else self.pool(x)
        return torch.relu(out) if self.relu_after else out


class StackedConv2d(nn.Conv2d):
    """A ``Conv2d`` of the stateless stacked model (same parameters, same names); what it does
    beyond ``Conv2d`` is set by the passes:

    * ``shared_input``: an input shared by all instances (not batched under vmap, e.g. the test
      set) goes through :class:`.ops.SharedInputConv`;
    * ``crop_kernel``/``crop_stride`` (a floor-mode ``MaxPool2d(k, stride=s)`` without padding
      follows): only the output rows and columns the pooling reads are computed. It reads the
      first ``((H - k) // s) * s + k`` rows of its input: on the calorimeter nets' 13x13 map a
      2x2 pooling drops row and column 12, 15% of the convolution's work, forward and backward.
      The rows kept are computed from the same input window with the same weights; the dropped
      ones never reach the loss;
    * ``fused`` (with the pooling that followed it as ``pool_after``): it runs that pooling
      itself, and evaluates a shared input with :class:`.ops.SharedConvPool` (``eval_pool``,
      the pooling's window) when its weights are batched and no gradient is asked for.
    """

    shared_input: bool = False
    crop_kernel: tuple[int, int] | None = None
    crop_stride: tuple[int, int] = (1, 1)
    fused: bool = False
    eval_pool: tuple[int, int] = (1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            return self._conv(x)
        pool = self.pool_after
        if not torch.is_grad_enabled() and x.dim() == 4 and not is_batched(x) and is_batched(self.weight):
            out = SharedConvPool.apply(x, self.weight, self.eval_pool)
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
        if self.shared_input and x.dim() == 4 and not is_batched(x) and is_batched(self.weight):
            return SharedInputConv.apply(x, self.weight, self.bias, self)
        return super().forward(x)


@dataclass(frozen=True)
class Pass:
    """One named rewrite: ``rewrite(root)`` changes the stateless stacked model in place and
    returns how many places it rewrote."""

    name: str
    rewrite: Callable[[nn.Module], int]

    @property
    def summary(self) -> str:
        return (self.rewrite.__doc__ or "").strip().splitlines()[0]


#: the passes by name, in the order they run
PASSES: dict[str, Pass] = {}


def _register(name: str) -> Callable[[Callable[[nn.Module], int]], Callable[[nn.Module], int]]:
    def add(fn: Callable[[nn.Module], int]) -> Callable[[nn.Module], int]:
        PASSES[name] = Pass(name, fn)
        return fn

    return add


def apply(root: nn.Module, passes: Iterable[str] | None = None) -> dict[str, int]:
    """Run the named passes (all by default), in the registry's order, on ``root`` in place;
    returns how many places each rewrote."""
    chosen = list(PASSES) if passes is None else list(passes)
    unknown = [p for p in chosen if p not in PASSES]
    if unknown:
        raise InputError(f"unknown stacked-model rewrite {unknown[0]!r} (valid: {', '.join(PASSES)})")
    return {name: PASSES[name].rewrite(root) for name in PASSES if name in chosen}


# -- helpers shared by the passes ----------------------------------------------------------------
def _sequentials(root: nn.Module) -> list[nn.Sequential]:
    """Every ``nn.Sequential`` in the tree (a list: the passes replace modules as they go)."""
    return [m for m in root.modules() if isinstance(m, nn.Sequential)]


def _stacked_conv(root: nn.Module, m: nn.Module) -> StackedConv2d | None:
    """``m`` as a :class:`StackedConv2d` (its class swapped when it is a plain ``Conv2d`` used once
    in ``root``), or None where a rewrite must leave it alone."""
    if type(m) is StackedConv2d:
        return m
    if type(m) is not nn.Conv2d or sum(x is m for x in root.modules(remove_duplicate=False)) != 1:
        return None
    swap_class(m, StackedConv2d)
    return m


def _convs_and_next(root: nn.Module, skip: tuple[type, ...]) -> Iterator[tuple[nn.Sequential, int, int]]:
    """``(seq, i, j)`` for each ``Conv2d`` (plain or rewritten) at ``seq[i]`` of every
    ``nn.Sequential``, ``j`` the first position after it whose module's type is not in ``skip``."""
    for seq in _sequentials(root):
        for i in range(len(seq)):
            if type(seq[i]) in (nn.Conv2d, StackedConv2d):
                j = i + 1
                while j < len(seq) and type(seq[j]) in skip:
                    j += 1
                yield seq, i, j


def _poolable(m: nn.Module) -> bool:
    return type(m) in _POOLS and not getattr(m, "return_indices", False)


def _plain_max_pool(m: nn.Module | None) -> nn.MaxPool2d | None:
    """The floor-mode, unpadded, undilated ``MaxPool2d`` (bare or wrapped) ``m`` is, or None."""
    pool = m.pool if isinstance(m, PoolForStack) else m
    if (
        type(pool) is nn.MaxPool2d
        and not pool.return_indices  # the indices would refer to a cropped map
        and not pool.ceil_mode
        and _pair(pool.padding) == (0, 0)
        and _pair(pool.dilation) == (1, 1)
    ):
        return pool
    return None


def _valid(conv: nn.Conv2d) -> bool:
    return conv.padding in ((0, 0), "valid")


# -- the passes ----------------------------------------------------------------------------------
@_register("shared_input_conv")
def _shared_input_conv(root: nn.Module) -> int:
    """Convolutions of an input shared by all instances run channels-last (SharedInputConv)."""
    done = 0
    for m in list(root.modules()):
        conv = _stacked_conv(root, m) if type(m) is nn.Conv2d else None
        if conv is not None and conv.groups == 1 and conv.padding_mode == "zeros":
            conv.shared_input = True
            done += 1
    return done


@_register("crop_conv")
def _crop_conv(root: nn.Module) -> int:
    """A convolution computes only the rows and columns the max-pooling after it reads."""
    done = 0
    for seq, i, j in _convs_and_next(root, _ELEMENTWISE):
        pool = _plain_max_pool(seq[j] if j < len(seq) else None)
        conv = _stacked_conv(root, seq[i]) if pool is not None and _valid(seq[i]) else None
        if conv is not None:
            conv.crop_kernel = _pair(pool.kernel_size)
            conv.crop_stride = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
            done += 1
    return done


@_register("pool_before_relu")
def _pool_before_relu(root: nn.Module) -> int:
    """``[nn.ReLU, max-pool]`` becomes ``[Identity, max-pool then ReLU]``.

    Exact, values and gradients: max-pooling commutes with any non-decreasing function, and
    relu(max) selects the same element as max(relu) when the maximum is positive (the first of
    equal maxima, in both orders) while both give a zero gradient when it is not. The ReLU then
    runs on the pooled map (4x fewer elements after a 2x2 pooling, forward and backward). Only
    ``nn.ReLU`` (PReLU and friends do not commute with max for negative slopes). Parameter
    names are unchanged (neither module has any)."""
    done = 0
    for seq in _sequentials(root):
        for i in range(len(seq) - 1):
            relu, pool = seq[i], seq[i + 1]
            if type(relu) is nn.ReLU and _poolable(pool):
                seq[i] = nn.Identity()
                seq[i + 1] = PoolForStack(pool, relu_after=True)
                done += 1
    return done


@_register("stacked_pool")
def _stacked_pool(root: nn.Module) -> int:
    """2-d max-poolings pool the K instances' channels as one image (StackedPool)."""
    done = 0
    for parent in list(root.modules()):
        if isinstance(parent, PoolForStack):
            continue
        for name, child in list(parent.named_children()):
            if isinstance(child, PoolForStack):
                child.stacked = True
            elif _poolable(child):
                setattr(parent, name, PoolForStack(child, stacked=True))
            else:
                continue
            done += 1
    return done


@_register("fused_eval_conv_pool")
def _fused_eval_conv_pool(root: nn.Module) -> int:
    """A one-channel convolution and its pooling evaluate a shared input fused (SharedConvPool)."""
    done = 0
    # nn.Identity in between: what pool_before_relu leaves of a ReLU
    for seq, i, j in _convs_and_next(root, (nn.Identity,)):
        m = seq[i]
        if getattr(m, "fused", False) or not (m.in_channels == 1 and m.groups == 1 and m.bias is None and _valid(m)):
            continue
        if m.stride != (1, 1) or m.dilation != (1, 1):
            continue
        relu = j if j < len(seq) and type(seq[j]) is nn.ReLU else None
        j += relu is not None
        pool = _plain_max_pool(seq[j] if j < len(seq) else None)
        if pool is None or _pair(pool.kernel_size) != _pair(pool.stride if pool.stride is not None else pool.kernel_size):
            continue
        wrapped = seq[j] if isinstance(seq[j], PoolForStack) else PoolForStack(seq[j])
        conv = _stacked_conv(root, m) if relu is None or not wrapped.relu_after else None
        if conv is None:
            continue
        if relu is not None:  # [ReLU, pool] runs as pool then ReLU, as pool_before_relu does
            seq[relu] = nn.Identity()
            wrapped.relu_after = True
        conv.pool_after = wrapped
        conv.eval_pool = _pair(pool.kernel_size)
        conv.fused = True
        seq[j] = nn.Identity()
        done += 1
    return done
