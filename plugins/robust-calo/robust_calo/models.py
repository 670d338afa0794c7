"""The paper's network family: two convolutions, max-pooling, one to three hidden dense layers.

Layout (appendix 6.1 of the paper, checked against its torchinfo parameter counts)::

    x [N, 1, 15, 15]
    -> Conv2d(1, f1, k, bias=False) -> act -> MaxPool2d(2)
    -> Conv2d(f1, f2, k, bias=False) -> act -> AdaptiveMaxPool2d(pool)     # pool 3 (Models 1, 2) or 1 (Models 3, 4)
    -> flatten -> [Linear -> act] x len(hidden) -> Linear(., outputs)

* The convolutions have no bias: the appendix counts 288 = 32 x 3 x 3 and 18,432 = 32 x 64 x 3 x 3.
* ``AdaptiveMaxPool2d(3)`` on the 4x4 map of a 3x3-kernel net is exactly MaxPool2d(2, stride=1)
  (the appendix's 4x4 -> 3x3); ``AdaptiveMaxPool2d(1)`` is the global max (4x4 -> 1x1). The adaptive
  form keeps the 2x2 and 5x5 kernels of the grid valid (a 5x5 net reaches 1x1 before pooling; pool 3
  then repeats that cell, a harmless redundancy that keeps the grid a plain product).
* PReLU has one slope per channel (conv) or per neuron (dense), as the paper says and as its
  counts show (32, 64, 64, 9).
* Inductive bias (paper section 3.8): the physics features are computed inside ``forward`` from the
  input cluster, so the data stay one tensor: ``esum`` is the sum of all cells (the paper's);
  ``barycenter`` is the (x, y) barycentre of the 3x3 cells around the hottest cell, in cm. The
  paper's all-cell barycentre is not used: with per-cell noise its denominator (the noisy sum) can
  approach zero for ~1 GeV photons and feed the net values of metres; the 3x3 one is bounded. They are concatenated *after the first hidden dense
  layer* when there are at least two hidden layers (Model 4: Linear(64 + 2, 9) = 603 parameters),
  and to the flattened convolution output when there is only one (Model 2: Linear(576 + 1, 9) =
  5,202 parameters; the paper's text says "after the first fully connected layer" but its count
  for Model 2 only fits this reading). The candidate parameter ``features_at`` (the index of the
  dense layer that receives them) overrides this: the NAS space's three-layer nets take them in the
  last layer, as NAS 2's count shows (Linear(64 + 1, 9) = 594).

Inputs and outputs (``input`` candidate parameter):

* ``raw`` (default, the paper's choice: "the data are not processed in any way"): deposits in GeV
  go in as they are; the energy net outputs GeV, the position net centimetres. A ReLU net with
  bias-free convolutions starts out positively homogeneous in its input, which suits energy
  (linear in the deposits). The energy-sum feature enters in GeV, the barycentre in cm.
* ``fraction``: the cluster is divided by its own energy sum before the convolutions, so the net
  sees only the shower shape (O(1) values for any energy, dataset A or B). The energy net then
  predicts the ratio E / sum and returns ``sum x ratio`` in GeV; the position net returns cm. The
  energy-sum feature enters as ln(sum / 1 GeV). Offered as a more robust alternative, not part of
  the paper.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "FEATURES",
    "INPUTS",
    "CaloNet",
    "build_calo_net",
    "count_parameters",
    "local_barycenter_torch",
]

ACTIVATIONS = ("relu", "prelu")
FEATURES = ("none", "esum", "barycenter")
INPUTS = ("raw", "fraction")
GRID = 15


def _act(name: str, width: int) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "prelu":
        return nn.PReLU(num_parameters=width)
    raise ValueError(f"unknown activation {name!r} (valid: {', '.join(ACTIVATIONS)})")


def _conv_out(size: int, kernel: int) -> int:
    return size - kernel + 1


class CaloNet(nn.Module):
    """A network of the paper's family; see the module docstring for the layout."""

    def __init__(
        self,
        *,
        filters: Sequence[int] = (32, 64),
        kernel: int = 3,
        pool: int = 3,
        hidden: Sequence[int] = (9,),
        activation: str = "relu",
        features: str = "none",
        input: str = "raw",  # noqa: A002 - the candidate parameter's name
        features_at: int | None = None,
        outputs: int = 1,
        target: str = "energy",
        pitch_cm: float = 4.04,
        grid: int = GRID,
    ) -> None:
        super().__init__()
        if len(filters) != 2:
            raise ValueError(f"filters must name two convolutions, got {list(filters)}")
        if not hidden:
            raise ValueError("hidden must list at least one dense layer width")
        if features not in FEATURES:
            raise ValueError(f"unknown features {features!r} (valid: {', '.join(FEATURES)})")
        if input not in INPUTS:
            raise ValueError(f"unknown input {input!r} (valid: {', '.join(INPUTS)})")
        if target not in ("energy", "position"):
            raise ValueError(f"target must be 'energy' or 'position', got {target!r}")
        f1, f2 = (int(f) for f in filters)
        k = int(kernel)
        after_conv1 = _conv_out(grid, k)
        after_pool1 = after_conv1 // 2
        after_conv2 = _conv_out(after_pool1, k)
        if after_conv1 < 2 or after_conv2 < 1:
            raise ValueError(f"kernel {k} is too large for a {grid}x{grid} cluster")
        self.target, self.features, self.input_mode = target, features, input
        self.conv = nn.Sequential(
            nn.Conv2d(1, f1, k, bias=False),
            _act(activation, f1),
            nn.MaxPool2d(2),
            nn.Conv2d(f1, f2, k, bias=False),
            _act(activation, f2),
            nn.AdaptiveMaxPool2d(int(pool)),
            nn.Flatten(),
        )
        n_feat = {"none": 0, "esum": 1, "barycenter": 2}[features]
        # index of the dense layer receiving the features: the second, or the only one (the grid's
        # models); the NAS space's three-layer nets say ``features_at`` (NAS 2: the last, 9 neurons)
        self.inject_at = (1 if len(hidden) >= 2 else 0) if features_at is None else int(features_at)
        if not 0 <= self.inject_at < len(hidden):
            raise ValueError(f"features_at {features_at} names no dense layer (there are {len(hidden)})")
        width = f2 * int(pool) ** 2
        layers: list[nn.Module] = []
        for i, h in enumerate(hidden):
            extra = n_feat if i == self.inject_at else 0
            layers.append(nn.Sequential(nn.Linear(width + extra, int(h)), _act(activation, int(h))))
            width = int(h)
        self.dense = nn.ModuleList(layers)
        self.out = nn.Linear(width, int(outputs))
        centres = (torch.arange(grid, dtype=torch.float32) - (grid - 1) / 2.0) * float(pitch_cm)
        self.register_buffer("centres", centres, persistent=False)

    # the physics features, vmap-friendly (no data-dependent control flow, no in-place writes)
    def _features(self, x: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        if self.features == "esum":
            if self.input_mode == "fraction":
                return torch.log(total.clamp_min(1e-3)).unsqueeze(1)
            return total.unsqueeze(1)
        return local_barycenter_torch(x, self.centres)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.sum(dim=(1, 2, 3))
        if self.input_mode == "fraction":
            safe = torch.where(total > 0, total, torch.ones_like(total))
            h = self.conv(x / safe[:, None, None, None])
        else:
            h = self.conv(x)
        feats = None if self.features == "none" else self._features(x, total)
        for i, layer in enumerate(self.dense):
            if feats is not None and i == self.inject_at:
                h = torch.cat([h, feats], dim=1)
            h = layer(h)
        out = self.out(h)
        if self.input_mode == "fraction" and self.target == "energy":
            out = out * total.unsqueeze(1)
        return out


def local_barycenter_torch(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Barycentre ``[N, 2]`` (x, y) of the 3x3 cells around the hottest cell of ``x`` ``[N, 1, H, W]``,
    in the unit of ``centres``; its offset from the hottest cell is clipped to +-1.5 cells. Matches
    :func:`robust_calo.features.local_barycenter`; the hottest cell is found by comparison with the
    maximum (a tie averages the tied cells' centres), so it runs under ``torch.func.vmap``."""
    e = x[:, 0]  # [N, y, x]: rows along y, columns along x (the simulator's layout)
    peak = e.amax(dim=(1, 2), keepdim=True)
    seed = (e == peak).to(e.dtype)
    n_seed = seed.sum(dim=(1, 2)).clamp_min(1.0)
    sx = (seed.sum(dim=1) @ centres) / n_seed
    sy = (seed.sum(dim=2) @ centres) / n_seed
    mask = torch.nn.functional.max_pool2d(seed.unsqueeze(1), 3, stride=1, padding=1)[:, 0]
    w = e * mask
    s = w.sum(dim=(1, 2))
    ok = s > 0
    safe = torch.where(ok, s, torch.ones_like(s))
    pitch = centres[1] - centres[0]
    lim = 1.5 * pitch
    dx = torch.where(ok, (w.sum(dim=1) @ centres) / safe - sx, torch.zeros_like(s)).clamp(-lim, lim)
    dy = torch.where(ok, (w.sum(dim=2) @ centres) / safe - sy, torch.zeros_like(s)).clamp(-lim, lim)
    return torch.stack([sx + dx, sy + dy], dim=1)


def build_calo_net(params: Mapping[str, Any], *, target: str, outputs: int = 1, pitch_cm: float = 4.04) -> CaloNet:
    """A :class:`CaloNet` from a candidate's parameters (training keys are ignored here)."""
    return CaloNet(
        filters=tuple(params.get("filters", (32, 64))),
        kernel=int(params.get("kernel", 3)),
        pool=int(params.get("pool", 3)),
        hidden=tuple(params.get("hidden", (9,))),
        activation=str(params.get("activation", "relu")),
        features=str(params.get("features", "none")),
        input=str(params.get("input", "raw")),
        features_at=params.get("features_at"),
        outputs=outputs,
        target=target,
        pitch_cm=pitch_cm,
    )


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, as torchinfo counts them."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
