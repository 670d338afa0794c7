"""The CIFAR form of ResNet-18 in plain torch, with the training augmentation on the device.

CIFAR ResNet-18 (He et al. 2016, as used for 32x32 images): a 3x3 stem convolution (no 7x7, no
max-pooling), four stages of two BasicBlocks with ``w, 2w, 4w, 8w`` channels (strides 1, 2, 2, 2),
global average pooling and one linear layer. ``width = 64`` gives the usual 11,173,962
parameters; a small ``width`` gives a tiny model for tests.

In training mode the model first augments its batch: a random crop of the image padded by 4
(zero) pixels, and a horizontal flip with probability 1/2, drawn for each image from torch's
generator on the batch's device, so a training is reproducible under ``torch.manual_seed`` (the
core seeds it with the instance's ``init_seed``). In eval mode nothing is augmented.

On CUDA only: the weights and activations use the channels-last layout and the forward runs
under bfloat16 autocast (no loss scaling needed); the logits are returned in float32. On the CPU
the model runs in plain float32, channels-first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicBlock", "ResNet18", "random_crop_flip"]


def random_crop_flip(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Each image of ``x`` [N, C, H, W] cropped at a random offset of its zero-padded copy and
    flipped left-right with probability 1/2, in one gather on ``x``'s device."""
    n, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), device=dev)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), device=dev)
    flip = torch.randint(0, 2, (n, 1), device=dev, dtype=torch.bool)
    rows = dy + torch.arange(h, device=dev)
    cols = dx + torch.arange(w, device=dev)
    cols = torch.where(flip, cols.flip(1), cols)
    batch = torch.arange(n, device=dev)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # [N, H, W, C]: advanced dims first
    return out.permute(0, 3, 1, 2)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(
        self,
        width: int = 64,
        classes: int = 10,
        augment: bool = True,
        channels_last: bool = True,
        amp: bool = True,
    ) -> None:
        super().__init__()
        self.augment, self.channels_last, self.amp = augment, channels_last, amp
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, cin = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**i
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, classes)
        self._layout_done = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.augment:
            x = random_crop_flip(x)
        if not x.is_cuda:
            return self._body(x)
        if self.channels_last:
            if not self._layout_done:  # once, on the device, before the optimiser's first step
                self.to(memory_format=torch.channels_last)
                self._layout_done = True
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            out = self._body(x)
        return out.float()

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
