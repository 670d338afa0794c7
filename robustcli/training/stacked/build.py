"""K models built as the plain loop builds them, stacked into one stateless model."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch.func import functional_call, stack_module_state

from robustcli.task import Candidate, Task
from robustcli.training.instance import InstanceSpec

__all__ = ["Stack", "forward_fn", "loss_fn", "stack_models"]

#: the stacked parameters or buffers, ``[K, ...]`` tensors by name
Stack = dict[str, torch.Tensor]


def loss_fn(task: Task, base: torch.nn.Module) -> Callable[..., torch.Tensor]:
    """``(params, buffers, x, y) -> task.objective(base(x), y)``, for one instance's slice under vmap."""

    def loss(params: Stack, buffers: Stack, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return task.objective(functional_call(base, (params, buffers), (x,)), y)

    return loss


def forward_fn(base: torch.nn.Module) -> Callable[..., torch.Tensor]:
    """``(params, buffers, x) -> base(x)``, for one instance's slice under vmap."""

    def forward(params: Stack, buffers: Stack, x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (params, buffers), (x,))

    return forward


def stack_models(
    task: Task, candidates: Sequence[Candidate], specs: Sequence[InstanceSpec], device: torch.device
) -> tuple[list[torch.nn.Module], torch.nn.Module, Stack, Stack]:
    """The K models, each built and initialised exactly as the plain loop does (under
    ``torch.manual_seed(spec.init_seed)``, then ``task.init_weights``), in training mode on
    ``device``; a stateless copy of the first on the meta device; their parameters and buffers
    stacked into ``[K, ...]`` leaf tensors."""
    models = []
    for cand, spec in zip(candidates, specs, strict=True):
        torch.manual_seed(spec.init_seed)
        model = task.build_model(cand)
        task.init_weights(model)
        models.append(model.to(device).train())
    params, buffers = stack_module_state(models)
    return models, copy.deepcopy(models[0]).to("meta"), params, buffers
