"""How a stack's examples and convolution weights are laid out in memory (same values)."""

from __future__ import annotations

import torch

__all__ = ["Gather", "channels_last_rows"]


class Gather:
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


def channels_last_rows(p: torch.Tensor) -> torch.Tensor:
    """A stacked conv weight ``[K, O, I, kh, kw]`` laid out ``[K, O, kh, kw, I]`` in memory (same
    values): the grouped convolution then reads ``[K*O, I, kh, kw]`` as the channels-last weight
    its channels-last input asks for, in place of a copy of the weight (forward and backward) and
    of its gradient at every step. The optimiser's element-wise math does not see the layout (its
    state is created with the parameter's strides)."""
    p = p.detach()
    if p.dim() != 5:
        return p
    return p.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
