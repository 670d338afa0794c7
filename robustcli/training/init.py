"""He (Kaiming) initialisation, the paper's choice for every network (section 3.9)."""

from __future__ import annotations

import torch
from torch import nn


def he_init(model: nn.Module) -> None:
    """Kaiming-normal weights (fan-in, ReLU gain) for conv and linear layers, zero biases.

    Other parameters (PReLU slopes, norms) keep their own defaults.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
