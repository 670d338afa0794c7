"""Autograd functions with their own vmap rules: the stacked model's exact fast operations.

Each computes what the operation it replaces computes (same values and gradients, up to the
summation order of a convolution for :class:`SharedConvPool`); only the memory layout or the
amount of work differs. The rewrites (:mod:`.rewrites`) decide where they run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from robustcli.training.stacked import tuning
from robustcli.training.stacked._torch import convolution_backward

__all__ = ["SharedConvPool", "SharedInputConv", "StackedPool"]


class StackedPool(torch.autograd.Function):
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
        cl = torch.channels_last
        if tuning.for_device(x.device.type).channels_last_pool and x.dim() == 4 and not x.is_contiguous(memory_format=cl):
            # the CPU's channels-first max pooling is ~10-30x slower than channels-last here: a
            # copy (e.g. after a convolution of an unbatched channels-first input) is cheaper
            x = x.contiguous(memory_format=cl)
        out = fn(x)
        return out.reshape(n, k, c, *out.shape[2:]), 1


class SharedInputConv(torch.autograd.Function):
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
        gx, gw, gb = convolution_backward(
            grad, x, weight, None if bias is None else list(bias.shape), list(conv.stride), list(conv.padding),
            list(conv.dilation), conv.groups,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], bias is not None and ctx.needs_input_grad[2]],
        )  # fmt: skip
        return gx, gw, gb, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], x, weight, bias, conv):
        xd, wd, bd = in_dims[:3]
        if xd is not None or wd is None or x.dim() != 4 or conv.groups != 1:
            raise NotImplementedError("SharedInputConv: an unbatched input and batched weights only")
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


class SharedConvPool(torch.autograd.Function):
    """Evaluation only (no gradient): a one-channel convolution of an input shared by all K
    instances, then a ``k x k``, stride-``k`` max-pooling, under vmap, without writing the
    full-resolution map: the convolution is computed as matrix products of the input's patches
    (each output position's ``k*k`` window positions as consecutive rows) with the
    ``[kh*kw, K*O]`` filters, and the pooling as their maximum over the window, in cache-sized
    tiles of rows (:data:`.tuning.SHARED_CONV_POOL_TILE_FLOATS`). Max is exact in any order, so
    the pooled values are those of convolution-then-pooling up to the convolution's own
    summation order (a 9-term dot product per value, ~1e-7 relative). Measured 2.5x faster than
    the two ops for layer 1 of the calorimeter nets (K=64, 2 cores): the full map (150 MB per
    chunk of the test set) never exists."""

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, k: tuple[int, int]) -> torch.Tensor:
        out = torch.nn.functional.conv2d(x, weight)
        return torch.nn.functional.max_pool2d(out, k)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        raise RuntimeError("SharedConvPool is for evaluation only")

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], x: torch.Tensor, weight: torch.Tensor, k: tuple[int, int]):
        if in_dims[0] is not None or in_dims[1] is None:
            raise NotImplementedError("SharedConvPool: an unbatched input and batched weights only")
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
        tiled = tuning.for_device(x.device.type).tile_conv_pool
        tile = max(1, tuning.SHARED_CONV_POOL_TILE_FLOATS // (window * nk * o)) if tiled else best.shape[0]
        for lo in range(0, best.shape[0], tile):
            hi = min(best.shape[0], lo + tile)
            part = (rows[lo * window : hi * window] @ wt).view(hi - lo, window, nk * o)
            torch.amax(part, 1, out=best[lo:hi])
        # [N*Ho*Wo, K*O] is [N, K*O, Ho, Wo] channels-last: logical [N, K, O, Ho, Wo], instances at dim 1
        out = best.view(n, ho, wo, nk, o).permute(0, 3, 4, 1, 2)
        return out, 1
